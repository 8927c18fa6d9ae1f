import XCTest
@testable import SlowFastKit
@testable import SlowFastIR
@testable import SlowFastTokens

final class ShapeInferenceTests: XCTestCase {
    func int64s(_ name: String, _ values: [Int64], scalar: Bool = false) -> Tensor {
        Tensor(name: name, elementType: .int64, dims: scalar ? [] : [Int64(values.count)], storage: .bytes(TensorBytes(int64s: values)))
    }

    /// A ViT-style patch embedding as TorchScript writes it: Conv, Flatten via a Reshape whose
    /// target is computed from Shape/Gather/Unsqueeze/Concat, Transpose, then a CLS token
    /// concatenated in front through Expand with an exporter's `Where(Equal(shape, -1))`.
    func patchModel() -> Model {
        let graph = Graph(name: "tower")
        graph.inputs = [ValueInfo(name: "pixels", type: .tensor(.float, [.param("frames"), .value(3), .value(32), .value(48)]))]
        graph.initializers = [
            Tensor(name: "w", dims: [16, 3, 4, 4], floats: Array(repeating: 0, count: 16 * 3 * 16)),
            Tensor(name: "cls", dims: [16], floats: Array(repeating: 0, count: 16)),
            int64s("zero", [0], scalar: true), int64s("axes0", [0]), int64s("c16", [16]), int64s("minus1", [-1]),
            int64s("one_dims", [1, 1]), int64s("neg", [-1, -1, -1]),
        ]
        graph.nodes = [
            Node("Conv", name: "patch", inputs: ["pixels", "w"], outputs: ["conv"], attributes: [.ints("strides", [4, 4])]),
            Node("Shape", name: "shape", inputs: ["pixels"], outputs: ["shape"]),
            Node("Gather", name: "batch", inputs: ["shape", "zero"], outputs: ["batch"], attributes: [.int("axis", 0)]),
            Node("Unsqueeze", name: "batch1", inputs: ["batch", "axes0"], outputs: ["batch1"]),
            Node("Concat", name: "target", inputs: ["batch1", "c16", "minus1"], outputs: ["target"], attributes: [.int("axis", 0)]),
            Node("Reshape", name: "flat", inputs: ["conv", "target"], outputs: ["flat"]),
            Node("Transpose", name: "tokens", inputs: ["flat"], outputs: ["tokens"], attributes: [.ints("perm", [0, 2, 1])]),
            Node("Concat", name: "cls_target", inputs: ["batch1", "one_dims"], outputs: ["cls_target"], attributes: [.int("axis", 0)]),
            Node("Equal", name: "is_minus", inputs: ["cls_target", "neg"], outputs: ["is_minus"]),
            Node("Where", name: "fixed", inputs: ["is_minus", "neg", "cls_target"], outputs: ["fixed"]),
            Node("Expand", name: "cls_all", inputs: ["cls", "fixed"], outputs: ["cls_all"]),
            Node("Concat", name: "with_cls", inputs: ["cls_all", "tokens"], outputs: ["with_cls"], attributes: [.int("axis", 1)]),
            Node("Mystery", domain: "com.example", name: "opaque", inputs: ["with_cls"], outputs: ["opaque"]),
        ]
        graph.outputs = [ValueInfo(name: "with_cls", type: nil)]
        return Model(graph: graph, irVersion: 8, opsetImports: [OpsetImport(domain: "", version: 17)])
    }

    func testProvesTokenShapesThroughShapeArithmetic() {
        let model = patchModel()
        var inference = ShapeInference(model: model)
        XCTAssertEqual(inference.infer(model, upTo: "conv")?.description, "[frames, 16, 8, 12]")
        XCTAssertEqual(inference.infer(model, upTo: "tokens")?.description, "[frames, 96, 16]")
        XCTAssertEqual(inference.infer(model, upTo: "cls_all")?.description, "[frames, 1, 16]")
        XCTAssertEqual(inference.infer(model, upTo: "with_cls")?.description, "[frames, 97, 16]")
        XCTAssertNil(inference.infer(model, upTo: "opaque")?.shape)
        XCTAssertEqual(inference.reason(for: "opaque"), "node 'opaque' (Mystery): op of domain 'com.example' not known to shape inference")
    }

    func testProofReadsTheGridAndAsksForTheLeadingToken() throws {
        let model = patchModel()
        XCTAssertThrowsError(try FeatureShapeProof.prove("with_cls", in: model, claims: FeatureClaims())) { error in
            XCTAssertTrue("\(error)".contains("97 tokens, 1 more than the 8x12 (node 'patch') patch grid: give --drop-leading 1"), "\(error)")
        }
        let proof = try FeatureShapeProof.prove("with_cls", in: model, claims: FeatureClaims(dropLeading: 1))
        XCTAssertEqual([proof.height, proof.width, proof.dim, proof.dropLeading], [8, 12, 16, 1])
        XCTAssertThrowsError(try FeatureShapeProof.prove("tokens", in: model, claims: FeatureClaims(height: 12, width: 8))) { error in
            XCTAssertTrue("\(error)".contains("--height 12 --width 8 do not match"), "\(error)")
        }
        let conv = try FeatureShapeProof.prove("conv", in: model, claims: FeatureClaims(dim: 16))
        XCTAssertEqual(conv.layout, .nchw)
        XCTAssertEqual([conv.height, conv.width], [8, 12])
    }

    /// Dynamo records a shape for most values (in terms of `frames`); inference, which never
    /// reads value_info, must agree with every one of them on the real tower exports.
    func testAgreesWithDynamoOnRealTowers() throws {
        for tower in ["siglip", "clip", "convnext"] {
            let model = try TestSupport.fixture("vision/\(tower)-dynamo")
            var inference = ShapeInference(model: model)
            _ = inference.infer(model, upTo: "projector_out")
            var compared = 0
            for info in model.graph.valueInfo {
                guard let name = info.name, case .tensor(_, let shape?)? = info.type?.kind else { continue }
                let inferred = try XCTUnwrap(inference.values[name]?.shape, "\(tower): \(name): \(inference.reason(for: name) ?? "")")
                XCTAssertEqual(inferred.count, shape.dims.count, "\(tower): \(name)")
                for (dim, mine) in zip(shape.dims, inferred) {
                    switch dim {
                    case .value(let n): XCTAssertEqual(mine.constant, n, "\(tower): \(name) \(inferred)")
                    case .param(let p): XCTAssertEqual(mine, SymbolicDim(symbol: p), "\(tower): \(name) \(inferred)")
                    case .unknown: continue
                    }
                }
                compared += 1
            }
            XCTAssertGreaterThan(compared, 50, tower)
        }
    }

    /// TorchScript records nothing in between; every value of the towers is still followed.
    func testFollowsEveryValueOfTorchScriptTowers() throws {
        for tower in ["siglip", "clip", "convnext"] {
            let model = try TestSupport.fixture("vision/\(tower)-torchscript")
            var inference = ShapeInference(model: model)
            _ = inference.infer(model, upTo: "projector_out")
            for node in model.graph.nodes {
                for output in node.outputs where !output.isEmpty {
                    XCTAssertNotNil(inference.values[output]?.shape, "\(tower): \(output): \(inference.reason(for: output) ?? "")")
                }
            }
            XCTAssertEqual(inference.values["projector_out"]?.shape?.first, SymbolicDim(symbol: "frames"), tower)
        }
    }
}
