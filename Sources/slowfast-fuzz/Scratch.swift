import SlowFastKit
#if canImport(Glibc)
import Glibc
#endif

/// A private folder per process: `in/` holds the inputs a target writes, `out/` what the tool
/// writes, `base/` the models and checkpoints made once at start.
enum Scratch {
    static let folder: String = {
        var template = Array("/tmp/slowfast-fuzz-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "cannot create a temporary folder")
        let path = String(cString: template)
        for sub in ["in", "in/genai", "in/map", "out", "base"] { mkdir(path + "/" + sub, 0o755) }
        return path
    }()

    /// Writes `bytes` to `folder/relative` and returns the path.
    static func file(_ relative: String, _ bytes: UnsafeBufferPointer<UInt8>) -> String {
        let path = folder + "/" + relative
        write(path, bytes)
        return path
    }

    static func write(_ path: String, _ bytes: UnsafeBufferPointer<UInt8>) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { return }
        var done = 0
        while done < bytes.count, let start = bytes.baseAddress {
            let written = Glibc.write(descriptor, start + done, bytes.count - done)
            if written <= 0 { break }
            done += written
        }
        close(descriptor)
    }

    /// A path under `out/` after removing whatever an earlier input left there, so every
    /// input finds an empty output folder.
    static func output(_ name: String) -> String {
        removeTree(folder + "/out")
        mkdir(folder + "/out", 0o755)
        return folder + "/out/" + name
    }

    static func removeTree(_ path: String) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        if (info.st_mode & S_IFMT) == S_IFDIR, let directory = opendir(path) {
            var names: [String] = []
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
                if name != "." && name != ".." { names.append(name) }
            }
            closedir(directory)
            for name in names { removeTree(path + "/" + name) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }
}

/// The models and checkpoints the targets work on, made once per process from two committed
/// fixtures (a float TorchScript export and its int4 MatMulNBits twin): the originals, each
/// rewritten with hybrid layers every 2 (model, weight map beside it), and a checkpoint of each
/// rewritten model's weights.
enum Bases {
    /// Where the fixtures are; `SLOWFAST_FUZZ_FIXTURES` overrides (default: run from the
    /// repository root).
    static let fixtures: String = getenv("SLOWFAST_FUZZ_FIXTURES").map { String(cString: $0) } ?? "Tests/Fixtures"
    static let names = ["qwen2-torchscript", "qwen2-torchscript-kv-int4"]

    static let originals: [String] = names.map { fixtures + "/" + $0 + "/model.onnx" }

    struct Rewritten {
        let model: String
        let checkpoint: String

        /// Hard links to the model (never modified) in `relative`, where a fuzzed map can go
        /// beside it without touching the base's own map.
        func copy(into relative: String) -> String {
            let target = Scratch.folder + "/" + relative + "/model.onnx"
            unlink(target)
            link(model, target)
            return target
        }
    }

    static let rewritten: [Rewritten] = zip(names, originals).map { name, original in
        let model = Scratch.folder + "/base/" + name + ".onnx"
        let checkpoint = Scratch.folder + "/base/" + name + "-weights"
        do {
            _ = try Pipeline.rewrite(original, to: model, request: RewriteRequest(hybrid: HybridRequest(layers: .every(2, from: 0, below: nil))),
                                     weights: .inline)
            let loaded = try ModelReader.read(path: model)
            let map = try WeightMapSource.load(forModel: loaded, at: model)
            try WeightExport.export(loaded, weightMap: map, to: checkpoint)
        } catch {
            fputs("slowfast-fuzz: cannot make the base model from \(original): \(error)\n", stderr)
            exit(2)
        }
        return Rewritten(model: model, checkpoint: checkpoint)
    }

    /// The float base's every weight in shards of at most 400 kB, with their index.
    static let shardedCheckpoint: String = {
        let folder = Scratch.folder + "/base/sharded"
        do {
            let model = try ModelReader.read(path: rewritten[0].model)
            let map = try WeightMapSource.load(forModel: model, at: rewritten[0].model)
            try WeightExport.export(model, weightMap: map, to: folder, options: .init(all: true, maxShardBytes: 400_000))
        } catch {
            fputs("slowfast-fuzz: cannot write the sharded checkpoint: \(error)\n", stderr)
            exit(2)
        }
        return folder
    }()
}
