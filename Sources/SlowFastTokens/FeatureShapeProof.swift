import SlowFastIR

/// What the user said about the features the token ops read; nil means "read it from the graph".
public struct FeatureClaims: Equatable, Sendable {
    public var height: Int?
    public var width: Int?
    public var dim: Int?
    public var layout: FeatureLayout?
    public var dropLeading: Int?
    public var frames: Int?
    /// `--grid T,H,W`: flat rows [T*H*W, d] in (t, h, w) raster order, T temporal patches.
    public var grid: FlatGrid?
    /// `--grid-from NAME --merge M`: flat rows whose grid is read at run time.
    public var gridFrom: GridSource?

    public init(height: Int? = nil, width: Int? = nil, dim: Int? = nil, layout: FeatureLayout? = nil,
                dropLeading: Int? = nil, frames: Int? = nil, grid: FlatGrid? = nil) {
        self.height = height
        self.width = width
        self.dim = dim
        self.layout = layout
        self.dropLeading = dropLeading
        self.frames = frames
        self.grid = grid
    }
}

/// The merged grid of flat vision features: T temporal patches of H x W rows each.
public struct FlatGrid: Codable, Equatable, Sendable {
    public var frames: Int
    public var height: Int
    public var width: Int

    public init(frames: Int, height: Int, width: Int) {
        self.frames = frames
        self.height = height
        self.width = width
    }

    /// "4,2,3"
    public var text: String { "\(frames),\(height),\(width)" }
}

/// The layout of a vision graph's value, established by shape inference over the graph
/// (`ShapeInference`) and checked against what the user said: every dim the token ops rely on
/// is either proven by the graph or given by a flag, and a proven dim that disagrees with a
/// flag is an error. Nothing is taken from a value's recorded shape alone unless inference
/// cannot follow the graph there (then the recorded static dims are used, and the proof says so).
public struct FeatureShapeProof: Encodable, Equatable, Sendable {
    public var value: String
    /// The shape as proven, e.g. `[frames, 65, 32]`.
    public var shape: [String]
    public var elementType: ElementType
    public var layout: FeatureLayout
    public var height: Int
    public var width: Int
    public var dim: Int
    public var dropLeading: Int
    /// How each choice was made, one line each ("layout nchw: detected, ...").
    public var notes: [String]

    enum CodingKeys: String, CodingKey { case value, shape, elementType, layout, height, width, dim, dropLeading, notes }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(value, forKey: .value)
        try container.encode(shape, forKey: .shape)
        try container.encode(elementType.name, forKey: .elementType)
        try container.encode(layout, forKey: .layout)
        try container.encode(height, forKey: .height)
        try container.encode(width, forKey: .width)
        try container.encode(dim, forKey: .dim)
        try container.encode(dropLeading, forKey: .dropLeading)
        try container.encode(notes, forKey: .notes)
    }

    /// Establishes the layout of `value` in `model`, or throws a `FeatureShapeError` that says
    /// which dim could not be proven or disagrees, and which flag settles it.
    public static func prove(_ value: String, in model: Model, claims: FeatureClaims) throws -> FeatureShapeProof {
        var inference = ShapeInference(model: model)
        guard TokenBuilder.valueExists(value, in: model.graph) else {
            throw TokenBuilderError.valueNotFound(graph: model.graph.name ?? "", value: value)
        }
        let inferred = inference.infer(model, upTo: value)
        var notes: [String] = []
        var dims = inferred?.shape
        let recorded = TokenBuilder.staticShape(of: value, in: model.graph)
        if dims == nil, let recordedDims = TokenBuilder.recordedDims(of: value, in: model.graph) {
            dims = recordedDims.enumerated().map { i, dim in
                switch dim {
                case .value(let n): return SymbolicDim(n)
                case .param(let name): return SymbolicDim(symbol: "?\(name)")
                case .unknown: return SymbolicDim(symbol: "?recorded_\(i)")
                }
            }
            notes.append("shape taken from the model's recorded value info (inference stopped: \(inference.reason(for: value) ?? "unknown"))")
        } else if var known = dims, let recorded, recorded.count == known.count {
            for i in known.indices where known[i].hasUnknown && recorded[i] >= 0 {
                known[i] = SymbolicDim(recorded[i])
                notes.append("dim \(i) taken from the model's recorded value info")
            }
            dims = known
        }
        guard let dims else {
            throw FeatureShapeError.unproven(value: value, reason: inference.reason(for: value) ?? "no shape inferred")
        }
        let shapeText = dims.map(\.description)
        let elementType = inferred?.elementType ?? TokenBuilder.recordedElementType(of: value, in: model.graph) ?? .float
        guard [.float, .float16, .bfloat16, .double].contains(elementType) else {
            throw FeatureShapeError.notFloat(value: value, type: elementType.name)
        }
        let why = inference.reason(for: value)
        func constant(_ i: Int) -> Int? { dims[i].constant.map(Int.init) }
        /// A dim the ops need: proven, or given by a flag; a proven one must equal the flag.
        func settle(_ i: Int, _ name: String, _ claim: Int?, flag: String) throws -> Int {
            if let proven = constant(i) {
                if let claim, claim != proven {
                    throw FeatureShapeError.mismatch(value: value, shape: shapeText, dim: i, name: name, proven: proven, flag: flag, given: claim)
                }
                return proven
            }
            if let claim { notes.append("\(name) \(claim): from \(flag) (dim \(i) is \(dims[i]), not proven by the graph)"); return claim }
            throw FeatureShapeError.unprovenDim(value: value, shape: shapeText, dim: i, name: name, flag: flag, reason: why)
        }
        if dims.count != 2, let flag = claims.grid.map({ "--grid \($0.text)" }) ?? claims.gridFrom.map({ "--grid-from \($0.value)" }) {
            throw FeatureShapeError.gridOnFramedValue(value: value, shape: shapeText, grid: flag)
        }
        if dims.count != 2, claims.layout == .flat {
            throw FeatureShapeError.rankForLayout(value: value, shape: shapeText, layout: .flat)
        }
        if dims.count != 2, let frames = claims.frames, let proven = constant(0), proven != frames {
            throw FeatureShapeError.mismatch(value: value, shape: shapeText, dim: 0, name: "frames", proven: proven, flag: "--frames", given: frames)
        }

        switch dims.count {
        case 2:
            guard claims.grid != nil || claims.gridFrom != nil || claims.layout == .flat else {
                throw FeatureShapeError.flatNeedsGrid(value: value, shape: shapeText)
            }
            if let lead = claims.dropLeading, lead != 0 {
                throw FeatureShapeError.dropLeadingNeedsTokens(value: value, shape: shapeText)
            }
            let dim = try settle(1, "dim", claims.dim, flag: "--dim")
            let grid = try flatGrid(value, shape: shapeText, rows: constant(0), claims: claims, model: model, inference: &inference, notes: &notes)
            return FeatureShapeProof(value: value, shape: shapeText, elementType: elementType, layout: .flat, height: grid.height,
                                     width: grid.width, dim: dim, dropLeading: 0, notes: notes)
        case 4:
            if let lead = claims.dropLeading, lead != 0 {
                throw FeatureShapeError.dropLeadingNeedsTokens(value: value, shape: shapeText)
            }
            let layout: FeatureLayout
            if let given = claims.layout {
                layout = given
            } else {
                // A layout is consistent when every dim it reads as h, w, d agrees with the
                // flags given and is proven (an unproven dim makes the layout undecidable).
                func consistent(_ candidate: FeatureLayout) -> Bool {
                    let order: [(Int, Int?)] = candidate == .nhwc
                        ? [(1, claims.height), (2, claims.width), (3, claims.dim)]
                        : [(1, claims.dim), (2, claims.height), (3, claims.width)]
                    return order.allSatisfy { i, claim in constant(i) != nil && (claim == nil || claim == constant(i)) }
                }
                let fitting = FeatureLayout.framed.filter(consistent)
                guard fitting.count == 1, claims.height != nil || claims.width != nil || claims.dim != nil else {
                    throw FeatureShapeError.ambiguousLayout(value: value, shape: shapeText, fitting: fitting)
                }
                layout = fitting[0]
                notes.append("layout \(layout.rawValue): detected (only it reads \(shapeText) as the given \(claimsText(claims)))")
            }
            let (hi, wi, di) = layout == .nhwc ? (1, 2, 3) : (2, 3, 1)
            let height = try settle(hi, "height", claims.height, flag: "--height")
            let width = try settle(wi, "width", claims.width, flag: "--width")
            let dim = try settle(di, "dim", claims.dim, flag: "--dim")
            return FeatureShapeProof(value: value, shape: shapeText, elementType: elementType, layout: layout, height: height,
                                     width: width, dim: dim, dropLeading: 0, notes: notes)
        case 3:
            if claims.layout == .nchw {
                throw FeatureShapeError.rankForLayout(value: value, shape: shapeText, layout: .nchw)
            }
            let dim = try settle(2, "dim", claims.dim, flag: "--dim")
            let lead = claims.dropLeading ?? 0
            let grids = patchGrids(above: value, in: model, inference: &inference)
            let tokens = constant(1)
            var height = claims.height, width = claims.width
            if let tokens {
                let matching = grids.filter { $0.height * $0.width == tokens - lead }
                if let h = height, let w = width {
                    if !matching.isEmpty, !matching.contains(where: { $0.height == h && $0.width == w }) {
                        throw FeatureShapeError.gridMismatch(value: value, height: h, width: w, grids: matching.map(\.text))
                    }
                } else if height != nil || width != nil {
                    throw FeatureShapeError.halfGrid(value: value)
                } else if matching.count == 1 || (matching.count > 1 && Set(matching.map { [$0.height, $0.width] }).count == 1) {
                    height = matching[0].height
                    width = matching[0].width
                    notes.append("grid \(matching[0].height)x\(matching[0].width): read from \(matching[0].node)")
                } else if lead > 0, let whole = grids.first(where: { $0.height * $0.width == tokens }) {
                    throw FeatureShapeError.nothingToDrop(value: value, shape: shapeText, grid: whole.text, lead: lead)
                } else {
                    // Suggest the leading tokens when a grid explains all but a few.
                    let near = grids.first { tokens - $0.height * $0.width > 0 && tokens - $0.height * $0.width <= 16 }
                    throw FeatureShapeError.gridUnreadable(value: value, shape: shapeText, tokens: tokens, lead: lead,
                                                           hint: near.map { ($0.text, tokens - $0.height * $0.width) },
                                                           ambiguous: matching.map(\.text))
                }
                if let h = height, let w = width, h * w != tokens - lead {
                    let extra = tokens - h * w
                    throw FeatureShapeError.tokenCount(value: value, shape: shapeText, tokens: tokens, height: h, width: w, lead: lead,
                                                       suggestLead: claims.dropLeading == nil && extra > 0 && extra <= 16 ? extra : nil)
                }
            } else {
                guard let h = height, let w = width else {
                    throw FeatureShapeError.unprovenDim(value: value, shape: shapeText, dim: 1, name: "tokens per frame",
                                                        flag: "--height and --width (and --drop-leading for tokens before the grid)", reason: why)
                }
                notes.append("grid \(h)x\(w) + \(lead) leading: from the flags (dim 1 is \(dims[1]), not proven by the graph)")
            }
            return FeatureShapeProof(value: value, shape: shapeText, elementType: elementType, layout: .nhwc, height: height!,
                                     width: width!, dim: dim, dropLeading: lead, notes: notes)
        default:
            throw FeatureShapeError.rank(value: value, shape: shapeText)
        }
    }

    /// Flat rows [T*H*W, d] (a Qwen-VL merger's output): the grid comes from --grid, from
    /// --grid-from at run time (0 x 0 here), or from --height/--width with --layout flat (T read
    /// at run time); a proven row count must be T*H*W.
    static func flatGrid(_ value: String, shape shapeText: [String], rows: Int?, claims: FeatureClaims, model: Model,
                         inference: inout ShapeInference, notes: inout [String]) throws -> (height: Int, width: Int) {
        if let source = claims.gridFrom {
            try checkGridValue(source, in: model, inference: &inference)
            notes.append("grid: read at run time from '\(source.value)' (T, h, w before the \(source.merge)x\(source.merge) merge)")
            return (0, 0)
        }
        let height = claims.grid?.height ?? claims.height, width = claims.grid?.width ?? claims.width
        guard let height, let width else { throw FeatureShapeError.flatNeedsGrid(value: value, shape: shapeText) }
        if let grid = claims.grid, (claims.height.map { $0 != grid.height } ?? false) || (claims.width.map { $0 != grid.width } ?? false) {
            throw FeatureShapeError.gridAndFlags(value: value, grid: grid.text)
        }
        if let rows {
            let expected = claims.grid.map { $0.frames * $0.height * $0.width }
            if let expected, rows != expected {
                throw FeatureShapeError.gridRows(value: value, shape: shapeText, rows: rows, flag: "--grid \(claims.grid!.text)", expected: expected)
            }
            if expected == nil, rows % (height * width) != 0 {
                throw FeatureShapeError.gridRows(value: value, shape: shapeText, rows: rows, flag: "--height \(height) --width \(width)",
                                                 expected: (rows / (height * width) + 1) * height * width)
            }
            notes.append("rows: \(rows) = \(rows / (height * width)) temporal patches x \(height)x\(width), proven by the graph")
        } else {
            notes.append("rows: dim 0 is \(shapeText[0]), not proven by the graph; read as " + (claims.grid.map { "\($0.frames) x \($0.height)x\($0.width) from --grid" }
                ?? "temporal patches x \(height)x\(width) at run time"))
        }
        return (height, width)
    }

    /// The grid value holds three int64 numbers ([3] or [1, 3]), as Qwen-VL's `grid_thw` does.
    static func checkGridValue(_ source: GridSource, in model: Model, inference: inout ShapeInference) throws {
        guard TokenBuilder.valueExists(source.value, in: model.graph) else {
            throw TokenBuilderError.valueNotFound(graph: model.graph.name ?? "", value: source.value)
        }
        let inferred = inference.infer(model, upTo: source.value)
        let type = inferred?.elementType ?? TokenBuilder.recordedElementType(of: source.value, in: model.graph)
        let dims = inferred?.shape?.map { $0.constant.map(Int.init) } ?? TokenBuilder.staticShape(of: source.value, in: model.graph)?.map { Int($0) }
        let elements = dims.flatMap { $0.allSatisfy { ($0 ?? -1) >= 0 } ? $0.map { $0! }.reduce(1, *) : nil }
        guard type == .int64, elements == 3 else {
            throw FeatureShapeError.gridValue(value: source.value, type: type?.name ?? "unknown", shape: dims.map { $0.map { $0.map(String.init) ?? "?" } } ?? [])
        }
    }

    static func claimsText(_ claims: FeatureClaims) -> String {
        var parts: [String] = []
        if let h = claims.height { parts.append("--height \(h)") }
        if let w = claims.width { parts.append("--width \(w)") }
        if let d = claims.dim { parts.append("--dim \(d)") }
        return parts.joined(separator: " ")
    }

    struct Grid {
        var height: Int
        var width: Int
        var node: String
        var text: String { "\(height)x\(width) (\(node))" }
    }

    /// The spatial grids of the convolutions the value is computed from (a ViT's patch
    /// embedding, a ConvNeXt's stages), nearest first.
    static func patchGrids(above value: String, in model: Model, inference: inout ShapeInference) -> [Grid] {
        var grids: [Grid] = []
        var seen: Set<String> = []
        var queue = [value]
        while let name = queue.first {
            queue.removeFirst()
            guard seen.insert(name).inserted, let node = inference.producer(of: name) else { continue }
            if node.op == "Conv", let output = node.outputs.first, let shape = inference.values[output]?.shape, shape.count == 4,
               let h = shape[2].constant, let w = shape[3].constant {
                grids.append(Grid(height: Int(h), width: Int(w), node: "node '\(node.name ?? "")'"))
            }
            queue.append(contentsOf: node.inputs.filter { !$0.isEmpty })
        }
        return grids
    }
}

/// Why the features' layout could not be established.
public enum FeatureShapeError: Error, CustomStringConvertible, Equatable {
    case unproven(value: String, reason: String)
    case notFloat(value: String, type: String)
    case rank(value: String, shape: [String])
    case rankForLayout(value: String, shape: [String], layout: FeatureLayout)
    case mismatch(value: String, shape: [String], dim: Int, name: String, proven: Int, flag: String, given: Int)
    case unprovenDim(value: String, shape: [String], dim: Int, name: String, flag: String, reason: String?)
    case ambiguousLayout(value: String, shape: [String], fitting: [FeatureLayout])
    case dropLeadingNeedsTokens(value: String, shape: [String])
    case gridMismatch(value: String, height: Int, width: Int, grids: [String])
    case halfGrid(value: String)
    case gridUnreadable(value: String, shape: [String], tokens: Int, lead: Int, hint: (String, Int)?, ambiguous: [String])
    case tokenCount(value: String, shape: [String], tokens: Int, height: Int, width: Int, lead: Int, suggestLead: Int?)
    case nothingToDrop(value: String, shape: [String], grid: String, lead: Int)
    case gridOnFramedValue(value: String, shape: [String], grid: String)
    case flatNeedsGrid(value: String, shape: [String])
    case gridAndFlags(value: String, grid: String)
    case gridRows(value: String, shape: [String], rows: Int, flag: String, expected: Int)
    case gridValue(value: String, type: String, shape: [String])

    public static func == (a: FeatureShapeError, b: FeatureShapeError) -> Bool { a.description == b.description }

    static func text(_ shape: [String]) -> String { "[" + shape.joined(separator: ", ") + "]" }

    public var description: String {
        switch self {
        case .unproven(let value, let reason):
            return "cannot prove the shape of '\(value)': \(reason); record its shape in the model's value_info (e.g. with onnx.shape_inference) or pick another --after value"
        case .notFloat(let value, let type):
            return "'\(value)' holds \(type); the token ops need float features"
        case .rank(let value, let shape):
            return "'\(value)' has shape \(Self.text(shape)); expected [frames, h*w, d] (with --drop-leading: [frames, N + h*w, d]), [frames, h, w, d], "
                + "with --layout nchw [frames, d, h, w], or with --grid T,H,W flat rows [T*H*W, d]"
        case .rankForLayout(let value, let shape, let layout):
            return "'\(value)' has shape \(Self.text(shape)); --layout \(layout.rawValue) expects "
                + (layout == .flat ? "flat rows [frames*h*w, d]" : "[frames, d, h, w]")
        case .gridOnFramedValue(let value, let shape, let grid):
            return "'\(value)' has shape \(Self.text(shape)), a value with a frame axis; --grid \(grid) is for flat rows [T*H*W, d] (a Qwen-VL merger's output): leave it out"
        case .flatNeedsGrid(let value, let shape):
            return "'\(value)' has shape \(Self.text(shape)): flat rows with no frame axis; give --grid T,H,W (temporal patches, merged height and width)"
        case .gridAndFlags(let value, let grid):
            return "'\(value)': --grid \(grid) and --height/--width disagree; give --grid alone"
        case .gridValue(let value, let type, let shape):
            return "--grid-from '\(value)' is \(type) \(Self.text(shape)); expected three int64 numbers T, h, w ([3] or [1, 3], like Qwen-VL's grid_thw)"
        case .gridRows(let value, let shape, let rows, let flag, let expected):
            return "'\(value)' has shape \(Self.text(shape)): \(rows) rows, but \(flag) needs \(expected)"
        case .mismatch(let value, let shape, let dim, let name, let proven, let flag, let given):
            return "'\(value)' has shape \(Self.text(shape)): dim \(dim) (\(name)) is \(proven), but \(flag) is \(given)"
        case .unprovenDim(let value, let shape, let dim, let name, let flag, let reason):
            return "'\(value)' has shape \(Self.text(shape)): dim \(dim) (\(name)) cannot be proven from the graph"
                + (reason.map { " (\($0))" } ?? "") + "; give \(flag)"
        case .ambiguousLayout(let value, let shape, let fitting):
            let why = fitting.isEmpty ? "neither [frames, h, w, d] nor [frames, d, h, w] fits the proven dims and the flags"
                : "it reads as both [frames, h, w, d] and [frames, d, h, w]"
            return "'\(value)' has shape \(Self.text(shape)) and \(why): give --layout nhwc or --layout nchw (with --height, --width, --dim)"
        case .dropLeadingNeedsTokens(let value, let shape):
            return "'\(value)' has shape \(Self.text(shape)): --drop-leading applies to token sequences [frames, N + h*w, d]"
        case .gridMismatch(let value, let height, let width, let grids):
            return "'\(value)': --height \(height) --width \(width) do not match the patch grid the graph computes it from: \(grids.joined(separator: ", "))"
        case .halfGrid(let value):
            return "'\(value)': give both --height and --width, or neither (to read the patch grid from the graph)"
        case .gridUnreadable(let value, let shape, let tokens, let lead, let hint, let ambiguous):
            var text = "'\(value)' has shape \(Self.text(shape)): dim 1 holds \(tokens) tokens"
            if lead > 0 { text += " (\(lead) leading dropped)" }
            if !ambiguous.isEmpty {
                return text + " and several patch grids of the graph fit (\(ambiguous.joined(separator: ", "))): give --height and --width"
            }
            if let (grid, extra) = hint {
                return text + ", \(extra) more than the \(grid) patch grid: give --drop-leading \(extra) to drop the leading token(s) (e.g. a CLS token), or --height and --width"
            }
            return text + " and the patch grid cannot be read from the graph: give --height and --width"
        case .nothingToDrop(let value, let shape, let grid, let lead):
            return "'\(value)' has shape \(Self.text(shape)): the \(grid) patch grid covers every token, so there are no leading tokens to drop (leave out --drop-leading \(lead))"
        case .tokenCount(let value, let shape, let tokens, let height, let width, let lead, let suggestLead):
            var text = "'\(value)' has shape \(Self.text(shape)): dim 1 holds \(tokens) tokens, but a \(height)x\(width) grid"
                + (lead > 0 ? " after \(lead) leading" : "") + " needs \(height * width + lead)"
            if let suggestLead { text += "; give --drop-leading \(suggestLead) to drop the \(suggestLead) leading token(s) (e.g. a CLS token)" }
            return text
        }
    }
}
