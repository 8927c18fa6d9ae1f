import SlowFastWeights
import SlowFastIR
import SlowFastAdapters
import Foundation

/// Options of the SReLU swap.
public struct SReLUOptions: Sendable {
    public enum Form: String, CaseIterable, Sendable {
        /// One model-local function `SReLU` in domain `ai.slowfast`, called at each site.
        case function
        /// Standard ops at each site (Less, Greater, Where, Sub, Mul, Add).
        case primitive
    }

    public var targets: [ActivationKind]
    public var form: Form
    /// Decoder layers whose activations change (nil: all), read from node names or metadata.
    public var layers: ClosedRange<Int>?
    /// A regular expression over node names; only matching sites change.
    public var scope: String?
    /// Force the channel axis (1 for NCHW, -1 for the last axis) and the channel count.
    public var channelAxis: Int?
    public var channels: Int?
    /// t_r of the exact (ReLU-family) init; default the largest finite float.
    public var tRight: Float
    /// Input range and grid size of the least-squares fit for smooth activations.
    public var fitRange: ClosedRange<Double>
    public var fitPoints: Int

    public init(targets: [ActivationKind], form: Form = .function, layers: ClosedRange<Int>? = nil, scope: String? = nil,
                channelAxis: Int? = nil, channels: Int? = nil, tRight: Float = .greatestFiniteMagnitude,
                fitRange: ClosedRange<Double> = -8 ... 8, fitPoints: Int = 4097) {
        self.targets = targets
        self.form = form
        self.layers = layers
        self.scope = scope
        self.channelAxis = channelAxis
        self.channels = channels
        self.tRight = tRight
        self.fitRange = fitRange
        self.fitPoints = fitPoints
    }
}

/// Why an SReLU swap was refused.
public enum SReLUError: Error, CustomStringConvertible, Equatable {
    case noSites(targets: [String])
    case unknownChannels(site: String)
    /// `reason` when the pattern could backtrack exponentially, nil when it does not compile.
    case badScope(String, reason: String?)
    /// SReLU is written with Where, Greater and Less (opset 9).
    case opsetTooOld(Int64)

    public var description: String {
        switch self {
        case .noSites(let targets):
            return "0 sites for --activation-targets \(targets.joined(separator: ",")): nothing to rewrite (add --allow-no-sites to write the model anyway)"
        case .unknownChannels(let site):
            return "activation '\(site)': cannot tell its channel count from the graph; give --srelu-channel-axis and --srelu-channels"
        case .badScope(let pattern, let reason):
            return "--activation-scope '\(pattern)' " + (reason.map { "is refused: \($0)" } ?? "is not a regular expression")
        case .opsetTooOld(let opset):
            return "the model imports opset \(opset); SReLU needs Where, Greater and Less of opset 9 or later (convert the model with onnx.version_converter first)"
        }
    }
}

/// Replaces activations with SReLU (docs/DESIGN.md §4): exact for ReLU, LeakyReLU and PReLU (the
/// paper's freezing init), a least-squares fit with its error reported for GELU, SiLU,
/// QuickGELU and HardSwish. Parameters are per channel: axis 1 after convolutions, the last
/// axis after linear layers.
public struct SReLUPass: ModelPass {
    public let name = RewriteMarks.sreluPass
    public let options: SReLUOptions
    /// When false, finding no site is an error (so nothing is written by mistake).
    public let allowNoSites: Bool

    public init(options: SReLUOptions, allowNoSites: Bool = false) {
        self.options = options
        self.allowNoSites = allowNoSites
    }

    public func run(_ model: Model) throws -> PassResult {
        let graph = model.graph
        var scopeRegex: BoundedRegex?
        if let scope = options.scope {
            do { scopeRegex = try BoundedRegex(scope) } catch let error as BoundedRegex.InvalidPattern {
                throw SReLUError.badScope(scope, reason: error.reason)
            }
        }
        let sites = ActivationSiteFinder.find(in: graph, kinds: options.targets) { site in
            let node = site.nodes[0]
            // Nodes another slowfast pass added (an insert block's SiLU) are that pass's design,
            // not the model's activations.
            if site.nodes.contains(where: { $0.metadata(RewriteMarks.pass) != nil }) { return false }
            if let regex = scopeRegex {
                guard regex.hasMatch(in: node.name ?? "") else { return false }
            }
            if let layers = options.layers {
                guard let layer = LayerNumbering.huggingFace.number(of: node), layers.contains(layer) else { return false }
            }
            return true
        }
        if sites.isEmpty {
            if allowNoSites { return PassResult(changed: false, changes: [.nothingFound(what: "sites")]) }
            throw SReLUError.noSites(targets: options.targets.map(\.rawValue))
        }

        let opset = model.opsetVersion("") ?? 9
        guard opset >= 9 else { throw SReLUError.opsetTooOld(opset) }
        var builder = GraphBuilder(names: NameAllocator(model: model), scope: "/slowfast/srelu", opset: opset)
        let channelFinder = ChannelFinder(graph: graph)
        var fits: [ActivationKind: SReLUFit] = [:]
        var parameters: [ParameterRecord] = []
        var changes: [ModelChange] = []
        var functionName: String?
        if options.form == .function {
            let installed = installFunction(in: model, opset: opset)
            functionName = installed.name
            changes.append(.functionAdded(domain: Domain.slowFast, name: installed.name, reused: installed.reused))
        }
        let removed = Set(sites.flatMap { $0.nodes.map(ObjectIdentifier.init) })
        var replacements: [ObjectIdentifier: [Node]] = [:]
        for (number, site) in sites.enumerated() {
            let anchor = site.nodes.last!
            let label = site.nodes.last!.name.flatMap { $0.isEmpty ? nil : $0 } ?? "site\(number)"
            guard let (axis, count, rank) = options.channels.map({ (options.channelAxis ?? -1, $0, 4) }) ?? channelFinder.channels(of: site.input, axisHint: options.channelAxis) else {
                throw SReLUError.unknownChannels(site: label)
            }
            guard (1 ... ChannelFinder.maxChannels).contains(count) else { throw SReLUError.unknownChannels(site: label) }
            // Parameters take the activation's own float type (float16 models get float16).
            let type = channelFinder.elementType(of: site.input)
            let dims: [Int64] = axis == 1 ? [Int64(count)] + [Int64](repeating: 1, count: max(rank - 2, 0)) : [Int64(count)]
            var values: SReLUParameters
            var rule: String
            var figures: [String: Double] = [:]
            var slopes: [Float]?
            switch site.kind {
            case .relu:
                values = .freezing(slope: 0, tRight: options.tRight)
                rule = "exact relu: t_l=0, a_l=0, a_r=1, t_r=\(options.tRight)"
            case .leakyRelu:
                values = .freezing(slope: site.slope ?? 0.01, tRight: options.tRight)
                rule = "exact leaky_relu: t_l=0, a_l=\(site.slope ?? 0.01), a_r=1, t_r=\(options.tRight)"
            case .prelu:
                values = .freezing(slope: 0, tRight: options.tRight)
                let stored = try site.slopeTensor.flatMap { try PatternMatcher(index: channelFinder.index).constantTensor($0)?.floatValues() } ?? [0.25]
                slopes = stored.count == count ? stored : [Float](repeating: stored.first ?? 0.25, count: count)
                rule = "exact prelu: t_l=0, a_l=the PRelu slope, a_r=1, t_r=\(options.tRight)"
            case .gelu, .silu, .quickGelu, .hardSwish:
                let fitted = fits[site.kind] ?? SReLUFit.fit(site.kind, range: options.fitRange, points: options.fitPoints)
                let fit = fitted.stored(as: type, kind: site.kind)
                if fits[site.kind] == nil {
                    changes.append(.activationFit(kind: site.kind.rawValue, maxAbsError: fit.maxAbsError, meanAbsError: fit.meanAbsError,
                                                  low: options.fitRange.lowerBound, high: options.fitRange.upperBound))
                }
                fits[site.kind] = fitted
                values = fit.parameters
                rule = "lsq-fit(\(site.kind.rawValue), range [\(options.fitRange.lowerBound), \(options.fitRange.upperBound)], \(options.fitPoints) points)"
                figures = ["fitMaxAbsError": fit.maxAbsError, "fitMeanAbsError": fit.meanAbsError]
            }
            // Parameters shaped to broadcast over the channel axis: [C] for the last axis,
            // [C, 1, ..., 1] for axis 1 of a rank-r tensor.

            let canonical = SReLUPass.canonicalScope(site.nodes.last!, fallback: "srelu_site_\(number)")
            var names: [String] = []
            for (suffix, value, perChannel) in [("t_left", values.tLeft, nil), ("a_left", values.aLeft, slopes), ("t_right", values.tRight, nil),
                                                ("a_right", values.aRight, nil)] as [(String, Float, [Float]?)] {
                let storage: TensorStorage = perChannel.map { .bytes(TensorBytes(floats: $0, as: type)) }
                    ?? .computed(RepeatedTensorBytes(value, count: count, as: type))
                let tensor = Tensor(name: "", elementType: type, dims: dims, storage: storage)
                let name = builder.parameter(tensor, name: "\(canonical).srelu.\(suffix)")
                names.append(name)
                parameters.append(ParameterRecord(onnxName: name, canonicalName: "\(canonical).srelu.\(suffix)", kind: .new,
                                                  initRule: rule, figures: figures))
            }
            builder.scope = "/slowfast/srelu/\(label.replacingOccurrences(of: "/", with: "_"))"
            builder.marks = [StringPair(RewriteMarks.pass, name), StringPair(RewriteMarks.site, label)]
            if let functionName {
                builder.appendNode(Node(functionName, domain: Domain.slowFast, name: builder.names.fresh("\(builder.scope)/SReLU"),
                                         inputs: [site.input] + names, outputs: [site.output]))
            } else {
                let result = builder.srelu(site.input, tLeft: names[0], aLeft: names[1], tRight: names[2], aRight: names[3])
                builder.renameLastOutput(from: result, to: site.output)
            }
            replacements[ObjectIdentifier(anchor)] = builder.takeNodes()
            changes.append(.activationReplaced(site: label, kind: site.kind.rawValue, channels: count, axis: axis, form: options.form.rawValue))
        }
        // Replace each site's nodes by the SReLU, at the site's last node.
        var nodes: [Node] = []
        for node in graph.nodes {
            if let replacement = replacements[ObjectIdentifier(node)] { nodes.append(contentsOf: replacement) }
            if !removed.contains(ObjectIdentifier(node)) { nodes.append(node) }
        }
        graph.nodes = nodes
        graph.initializers.append(contentsOf: builder.takeInitializers())
        try graph.sortTopologically()
        return PassResult(changed: true, parameters: parameters, changes: changes)
    }

    public func ensures(_ model: Model, _ result: PassResult) throws {
        let index = model.graph.index()
        for change in result.changes {
            guard case .activationReplaced(let site, _, _, _, _) = change else { continue }
            let marked = model.graph.nodes.contains { $0.metadata(RewriteMarks.site) == site && $0.metadata(RewriteMarks.pass) == name }
            if !marked { throw PassContractError("activation '\(site)' has no SReLU node") }
        }
        let initializers = Set(model.graph.initializers.compactMap(\.name))
        for record in result.parameters where !initializers.contains(record.onnxName) || index.consumers(of: record.onnxName).isEmpty {
            throw PassContractError("SReLU parameter '\(record.onnxName)' is missing or unused")
        }
    }

    /// The activations a previous rewrite replaced, read from the marks on its nodes.
    public static func sites(in model: Model) -> [String] {
        var seen = Set<String>()
        var sites: [String] = []
        for node in model.graph.nodes where node.metadata(RewriteMarks.pass) == RewriteMarks.sreluPass {
            if let site = node.metadata(RewriteMarks.site), seen.insert(site).inserted { sites.append(site) }
        }
        return sites
    }

    /// Adds the model-local function `SReLU(x, t_l, a_l, t_r, a_r)` in domain ai.slowfast
    /// (IR version 8 at least, as functions need) and returns its name. A function of that
    /// name already in the model is reused only when it is exactly ours (a model this tool
    /// wrote); any other gets a fresh name beside it, so a model's own function is never
    /// called by mistake.
    private func installFunction(in model: Model, opset: Int64) -> (name: String, reused: Bool) {
        var body = GraphBuilder(names: NameAllocator(graph: Graph(name: nil)), scope: "srelu", opset: opset)
        let output = body.srelu("x", tLeft: "t_left", aLeft: "a_left", tRight: "t_right", aRight: "a_right")
        body.renameLastOutput(from: output, to: "y")
        // Function bodies cannot hold initializers: constants are Constant nodes already.
        let function = Function(name: "SReLU", domain: Domain.slowFast, inputs: ["x", "t_left", "a_left", "t_right", "a_right"],
                                outputs: ["y"], nodes: body.takeNodes(), opsetImports: [OpsetImport(domain: "", version: opset)])
        function.docString = "S-shaped ReLU: t_r + a_r (x - t_r) for x >= t_r; x between; t_l + a_l (x - t_l) for x <= t_l."
        let existing = model.functions.filter { $0.domain == Domain.slowFast }
        var reused = false
        if let same = existing.first(where: { $0.name == "SReLU" }), same.computesTheSame(as: function) {
            function.name = "SReLU"
            reused = true
        } else {
            let taken = Set(existing.compactMap(\.name))
            var candidate = "SReLU", counter = 1
            while taken.contains(candidate) {
                counter += 1
                candidate = "SReLU_\(counter)"
            }
            function.name = candidate
            model.functions.append(function)
        }
        if !model.opsetImports.contains(where: { $0.domain == Domain.slowFast }) {
            model.opsetImports.append(OpsetImport(domain: Domain.slowFast, version: 1))
        }
        if (model.irVersion ?? 0) < 8 { model.irVersion = 8 }
        return (function.name ?? "SReLU", reused)
    }

    /// The module path of the site (`model.layers.3.mlp.act_fn`), from dynamo metadata or a
    /// TorchScript node name; `fallback` when neither says.
    static func canonicalScope(_ node: Node, fallback: String) -> String {
        if let scopes = node.metadata("pkg.torch.onnx.name_scopes"),
           let last = scopes.split(separator: ",").last?.trimmingCharacters(in: CharacterSet(charactersIn: "[]' \"")),
           !last.isEmpty {
            return last
        }
        if let name = node.name, name.hasPrefix("/"), name.dropFirst().contains("/") {
            return name.dropFirst().split(separator: "/").dropLast().joined(separator: ".")
        }
        return fallback
    }
}

extension GraphBuilder {
    /// Where(x >= t_r, t_r + a_r (x - t_r), Where(x <= t_l, t_l + a_l (x - t_l), x)): each
    /// piece computed exactly as the formula writes it.
    mutating func srelu(_ x: String, tLeft: String, aLeft: String, tRight: String, aRight: String) -> String {
        let right = op("Add", [tRight, op("Mul", [aRight, op("Sub", [x, tRight], "right_shift")], "right_scale")], "right")
        let left = op("Add", [tLeft, op("Mul", [aLeft, op("Sub", [x, tLeft], "left_shift")], "left_scale")], "left")
        // x <= t_l is not(x > t_l); x >= t_r is not(x < t_r) (Less/Greater exist from opset 9).
        let aboveLeft = op("Greater", [x, tLeft], "above_left")
        let belowRight = op("Less", [x, tRight], "below_right")
        let inner = op("Where", [aboveLeft, x, left], "inner")
        return op("Where", [belowRight, inner, right], "srelu")
    }
}
