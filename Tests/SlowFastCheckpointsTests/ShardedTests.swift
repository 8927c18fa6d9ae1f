import Foundation
import XCTest
@testable import SlowFastCheckpoints

final class ShardedTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try makeTempDir("shard") }
    override func tearDown() { removeTree(dir) }

    func makeWriter(_ max: Int) -> SafeTensorsShardedWriter {
        var s = SafeTensorsShardedWriter(maxShardBytes: max, metadata: ["format": "pt"])
        for i in (0..<5).reversed() {
            s.add(name: "layer\(i).w", dtype: .f32, shape: [4, 4]) { try $0.write(f32Bytes(Array(repeating: Float(i), count: 16))) }
        }
        return s
    }

    func testShardedRoundTripAndDeterminism() throws {
        let out = dir + "/m"
        let files = try makeWriter(150).write(toDirectory: out)
        XCTAssertEqual(files, ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                               "model-00003-of-00003.safetensors", "model.safetensors.index.json"])
        XCTAssertEqual(try makeWriter(150).plan().map(\.tensors),
                       [["layer0.w", "layer1.w"], ["layer2.w", "layer3.w"], ["layer4.w"]])
        let index = String(decoding: try readBytes(out + "/model.safetensors.index.json"), as: UTF8.self)
        XCTAssertEqual(index, """
        {
          "metadata": {
            "total_size": 320
          },
          "weight_map": {
            "layer0.w": "model-00001-of-00003.safetensors",
            "layer1.w": "model-00001-of-00003.safetensors",
            "layer2.w": "model-00002-of-00003.safetensors",
            "layer3.w": "model-00002-of-00003.safetensors",
            "layer4.w": "model-00003-of-00003.safetensors"
          }
        }

        """)
        for path in [out, out + "/model.safetensors.index.json"] {
            let c = try SafeTensorsCheckpoint.open(path: path)
            XCTAssertEqual(c.names, (0..<5).map { "layer\($0).w" })
            XCTAssertEqual(c.files.count, 3)
            for i in 0..<5 {
                XCTAssertEqual(try c.withBytes(of: "layer\(i).w") { f32Values(Array($0)) }, Array(repeating: Float(i), count: 16))
                XCTAssertEqual(c.entry(named: "layer\(i).w")?.file.metadata, ["format": "pt"])
            }
        }
        let out2 = dir + "/m2"
        try makeWriter(150).write(toDirectory: out2)
        for f in files { XCTAssertEqual(try readBytes(out + "/" + f), try readBytes(out2 + "/" + f), f) }
    }

    func testSingleShardHasNoIndex() throws {
        let out = dir + "/one"
        XCTAssertEqual(try makeWriter(1 << 20).write(toDirectory: out), ["model.safetensors"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out), ["model.safetensors"])
        let c = try SafeTensorsCheckpoint.open(path: out)
        XCTAssertEqual(c.names.count, 5)
        XCTAssertNil(c.indexPath)
        // Tensors bigger than the limit each get a shard.
        XCTAssertEqual(try makeWriter(10).plan().count, 5)
    }

    func testRefusesFolderWithCheckpoint() throws {
        let out = dir + "/full"
        try makeWriter(150).write(toDirectory: out)
        let before = try FileManager.default.contentsOfDirectory(atPath: out).sorted()
        assertSTError(try makeWriter(1 << 20).write(toDirectory: out), path: out) {
            if case .directoryNotEmpty = $0 { return true }; return false
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out).sorted(), before)
    }

    func testFailedShardedWriteRemovesItsFiles() throws {
        var s = makeWriter(150)
        s.add(name: "z", dtype: .u8, shape: [4]) { try $0.write([1]) }  // last shard fails
        let out = dir + "/fail"
        XCTAssertThrowsError(try s.write(toDirectory: out))
        // The writer made the folder, so a failed write removes it too: a refusal leaves nothing.
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        // A folder that was there before stays, empty as it was.
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
        XCTAssertThrowsError(try s.write(toDirectory: out))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out), [])
    }

    // MARK: Index defects

    /// Writes a two-shard checkpoint and returns its folder.
    func twoShards() throws -> String {
        let out = dir + "/ck"
        try makeWriter(150).write(toDirectory: out)
        return out
    }

    func writeIndex(_ folder: String, _ map: [String: String]) throws -> String {
        let p = folder + "/model.safetensors.index.json"
        let body = map.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \"\($0.value)\"" }.joined(separator: ", ")
        try writeBytes(Array("{\"metadata\": {}, \"weight_map\": {\(body)}}".utf8), to: p)
        return p
    }

    func standardMap() -> [String: String] {
        ["layer0.w": "model-00001-of-00003.safetensors", "layer1.w": "model-00001-of-00003.safetensors",
         "layer2.w": "model-00002-of-00003.safetensors", "layer3.w": "model-00002-of-00003.safetensors",
         "layer4.w": "model-00003-of-00003.safetensors"]
    }

    func testMissingShard() throws {
        let out = try twoShards()
        try FileManager.default.removeItem(atPath: out + "/model-00003-of-00003.safetensors")
        let idx = out + "/model.safetensors.index.json"
        assertSTError(try SafeTensorsCheckpoint.open(path: idx), path: idx) {
            if case .missingShard(_, "model-00003-of-00003.safetensors") = $0 { return true }; return false
        }
    }

    func testShardOutsideFolderByDotDot() throws {
        let out = try twoShards()
        try FileManager.default.copyItem(atPath: out + "/model-00003-of-00003.safetensors", toPath: dir + "/x.safetensors")
        var map = standardMap()
        map["layer4.w"] = "../x.safetensors"
        let idx = try writeIndex(out, map)
        assertSTError(try SafeTensorsCheckpoint.open(path: idx), path: idx) {
            if case .unsafeShardPath(_, "../x.safetensors") = $0 { return true }; return false
        }
        map["layer4.w"] = "sub/../model-00003-of-00003.safetensors"
        let idx2 = try writeIndex(out, map)
        assertSTError(try SafeTensorsCheckpoint.open(path: idx2), path: idx2) {
            if case .unsafeShardPath = $0 { return true }; return false
        }
    }

    func testShardOutsideFolderByAbsolutePath() throws {
        let out = try twoShards()
        var map = standardMap()
        map["layer4.w"] = out + "/model-00003-of-00003.safetensors"  // absolute, even though inside
        let idx = try writeIndex(out, map)
        assertSTError(try SafeTensorsCheckpoint.open(path: idx), path: idx) {
            if case .unsafeShardPath = $0 { return true }; return false
        }
    }

    func testShardOutsideFolderBySymlink() throws {
        let out = try twoShards()
        let shard3 = out + "/model-00003-of-00003.safetensors"
        try FileManager.default.moveItem(atPath: shard3, toPath: dir + "/outside.safetensors")
        try FileManager.default.createSymbolicLink(atPath: shard3, withDestinationPath: "../outside.safetensors")
        assertSTError(try SafeTensorsCheckpoint.open(path: out), path: out + "/model.safetensors.index.json") {
            if case .unsafeShardPath(_, "model-00003-of-00003.safetensors") = $0 { return true }; return false
        }
        // Allowed with the option (Hugging Face cache layout).
        let c = try SafeTensorsCheckpoint.open(path: out, options: .init(allowSymlinksOutsideFolder: true))
        XCTAssertEqual(c.names.count, 5)
        // A symlink that stays inside the folder is fine.
        try FileManager.default.removeItem(atPath: shard3)
        try FileManager.default.moveItem(atPath: dir + "/outside.safetensors", toPath: out + "/real3.bin")
        try FileManager.default.createSymbolicLink(atPath: shard3, withDestinationPath: "real3.bin")
        XCTAssertEqual(try SafeTensorsCheckpoint.open(path: out).names.count, 5)
    }

    func testTensorInTwoShards() throws {
        let out = try twoShards()
        var w = SafeTensorsWriter()
        w.add(name: "layer0.w", dtype: .u8, shape: [1], bytes: [1])
        try w.write(to: out + "/model-00004-of-00004.safetensors")
        var map = standardMap()
        map["extra"] = "model-00004-of-00004.safetensors"
        let idx = try writeIndex(out, map)
        assertSTError(try SafeTensorsCheckpoint.open(path: idx), path: nil) {
            if case .tensorInTwoShards("layer0.w", _, _) = $0 { return $0.description.contains("model-0000") }; return false
        }
        // Same defect in a folder without an index.
        try FileManager.default.removeItem(atPath: idx)
        assertSTError(try SafeTensorsCheckpoint.open(path: out), path: nil) {
            if case .tensorInTwoShards("layer0.w", _, _) = $0 { return true }; return false
        }
    }

    func testIndexNamesTensorItsShardLacks() throws {
        let out = try twoShards()
        var map = standardMap()
        map["ghost"] = "model-00001-of-00003.safetensors"
        let idx = try writeIndex(out, map)
        assertSTError(try SafeTensorsCheckpoint.open(path: idx), path: idx) {
            if case .tensorNotInShard(_, "ghost", "model-00001-of-00003.safetensors") = $0 { return true }; return false
        }
        map = standardMap()
        map["layer4.w"] = "model-00001-of-00003.safetensors"  // wrong shard: shard 3 is then unused, shard 1 lacks it
        let idx2 = try writeIndex(out, map)
        assertSTError(try SafeTensorsCheckpoint.open(path: idx2), path: idx2) {
            if case .tensorNotInShard(_, "layer4.w", _) = $0 { return true }; return false
        }
        map = standardMap()
        map.removeValue(forKey: "layer1.w")  // shard 1 holds a tensor the index omits
        let idx3 = try writeIndex(out, map)
        assertSTError(try SafeTensorsCheckpoint.open(path: idx3), path: idx3) {
            if case .tensorNotInIndex(_, "layer1.w", _) = $0 { return true }; return false
        }
    }

    func testMalformedIndex() throws {
        let out = try twoShards()
        let idx = out + "/model.safetensors.index.json"
        let cases = ["{", "[]", "{\"metadata\":{}}", "{\"weight_map\":[]}", "{\"weight_map\":{\"a\":1}}",
                     "{\"weight_map\":{\"a\":\"x\",\"a\":\"y\"}}"]
        for text in cases {
            try writeBytes(Array(text.utf8), to: idx)
            assertSTError(try SafeTensorsCheckpoint.open(path: out), path: idx) {
                if case .invalidIndex = $0 { return true }; return false
            }
        }
    }

    func testFolderWithoutIndex() throws {
        // Several files, no index: all read, sorted by name.
        let out = dir + "/plain"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        for (n, v) in [("b", 2), ("a", 1)] {
            var w = SafeTensorsWriter()
            w.add(name: "t.\(n)", dtype: .u8, shape: [1], bytes: [UInt8(v)])
            try w.write(to: out + "/\(n).safetensors")
        }
        try writeBytes([1, 2, 3], to: out + "/.hidden.safetensors")  // ignored
        try writeBytes([1, 2, 3], to: out + "/notes.txt")
        let c = try SafeTensorsCheckpoint.open(path: out)
        XCTAssertEqual(c.names, ["t.a", "t.b"])
        XCTAssertEqual(c.files.map { ($0.path as NSString).lastPathComponent }, ["a.safetensors", "b.safetensors"])
        XCTAssertEqual(try c.withBytes(of: "t.b") { Array($0) }, [2])
        // A single file directly.
        XCTAssertEqual(try SafeTensorsCheckpoint.open(path: out + "/a.safetensors").names, ["t.a"])
        // An empty folder.
        let empty = dir + "/empty"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        assertSTError(try SafeTensorsCheckpoint.open(path: empty), path: empty) {
            if case .noCheckpointFound = $0 { return true }; return false
        }
        // A bad file in the folder is reported with its own path.
        try writeBytes([1, 2, 3], to: out + "/c.safetensors")
        assertSTError(try SafeTensorsCheckpoint.open(path: out), path: "c.safetensors") {
            if case .fileTooSmall = $0 { return true }; return false
        }
    }
}
