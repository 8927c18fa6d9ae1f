// The fuzz targets (FuzzTarget): SLOWFAST_FUZZ_TARGET picks one, `model` by default.
//
// Built with `make fuzz` (-sanitize=fuzzer,address -DFUZZING) this is a libFuzzer binary:
// libFuzzer's own `main` is not linked because this file defines one, which hands control to
// libFuzzer's driver. Built normally it replays: each argument is an input file or a folder
// of them, every one is run once, and the count is printed (`make test` replays the corpus).
#if canImport(Glibc)
import Glibc
#endif

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

let target = FuzzTarget.selected
var argumentCount = CommandLine.argc
var arguments = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argumentCount, &arguments) { data, size in
    target.run(data, size)
    return 0
})
#else
func files(under path: String) -> [String] {
    var info = stat()
    guard stat(path, &info) == 0 else { return [] }
    guard (info.st_mode & S_IFMT) == S_IFDIR else { return (info.st_mode & S_IFMT) == S_IFREG ? [path] : [] }
    guard let directory = opendir(path) else { return [] }
    defer { closedir(directory) }
    var found: [String] = []
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        if name == "." || name == ".." { continue }
        found += files(under: path + "/" + name)
    }
    return found.sorted()
}

let target = FuzzTarget.selected
let inputs = CommandLine.arguments.dropFirst().flatMap(files(under:))
guard !inputs.isEmpty else {
    print("usage: [SLOWFAST_FUZZ_TARGET=NAME] slowfast-fuzz FILE_OR_FOLDER... (replays each input once)")
    exit(2)
}
for path in inputs {
    guard let handle = fopen(path, "rb") else { continue }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let got = fread(&chunk, 1, chunk.count, handle)
        if got <= 0 { break }
        bytes += chunk[..<got]
    }
    fclose(handle)
    bytes.withUnsafeBufferPointer { target.run($0.baseAddress, $0.count) }
}
print("\(target.rawValue): replayed \(inputs.count) inputs")
#endif
