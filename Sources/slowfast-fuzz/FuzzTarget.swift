import SlowFastKit
#if canImport(Glibc)
import Glibc
#endif

/// One fuzz input: the bytes are a model file. It is read, then rewritten with each pass
/// (SReLU, then hybrid layers found by discovery) and written; every error is an expected
/// outcome, only a crash, a trap or a sanitizer report is a finding.
enum FuzzTarget {
    /// A private folder per process: `in/model.onnx` holds the input, `out/` the outputs.
    static let folder: String = {
        var template = Array("/tmp/slowfast-fuzz-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "cannot create a temporary folder")
        let path = String(cString: template)
        mkdir(path + "/in", 0o755)
        mkdir(path + "/out", 0o755)
        return path
    }()

    static func run(_ data: UnsafePointer<UInt8>?, _ size: Int) {
        let input = folder + "/in/model.onnx"
        let descriptor = open(input, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { return }
        var done = 0
        while done < size, let data {
            let written = write(descriptor, data + done, size - done)
            if written <= 0 { break }
            done += written
        }
        close(descriptor)
        let requests: [RewriteRequest] = [
            RewriteRequest(),
            RewriteRequest(srelu: SReLUOptions(targets: ActivationKind.allCases), allowNoSites: true),
            RewriteRequest(hybrid: HybridRequest(layers: .every(1, from: 0, below: nil))),
            RewriteRequest(hybrid: HybridRequest(layers: .every(2, from: 0, below: nil), mode: .insert)),
        ]
        for request in requests {
            _ = try? Pipeline.rewrite(input, to: folder + "/out/model.onnx", request: request, weights: .inline)
        }
        if let model = try? ModelReader.read(path: input) { _ = ModelSummary(model: model, file: input) }
    }
}
