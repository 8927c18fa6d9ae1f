import ArgumentParser
import SlowFastKit

extension SReLUOptions.Form: ExpressibleByArgument {}

/// Options of the activation swap; shared by `rewrite` and `plan`.
struct ActivationOptions: ParsableArguments {
    @Option(help: "Swap activations for this one (only srelu).")
    var activation: String?

    @Option(name: .customLong("activation-targets"),
            help: "Which activations to replace: relu,leaky_relu,prelu,gelu,silu,quick_gelu,hard_swish ")
    var targets: String = "relu"

    @Option(name: .customLong("activation-layers"), help: "Only in these decoder layers, e.g. 0-7 or 3.")
    var layers: String?

    @Option(name: .customLong("activation-scope"), help: "Only at nodes whose name matches this regular expression.")
    var scope: String?

    @Option(name: .customLong("srelu-form"), help: "function (one model-local SReLU function) or primitive (standard ops).")
    var form: SReLUOptions.Form = .function

    @Option(name: .customLong("srelu-channel-axis"), help: "Force the channel axis: 1 (NCHW) or -1 (last).")
    var channelAxis: Int?

    @Option(name: .customLong("srelu-channels"), help: "Force the channel count (with --srelu-channel-axis).")
    var channels: Int?

    @Option(name: .customLong("srelu-tr"), help: "t_r of the exact ReLU-family init (default: the largest float, above any input).")
    var tRight: Float?

    @Option(name: .customLong("srelu-fit-range"), help: "Input range of the least-squares fit for GELU/SiLU/QuickGELU/HardSwish (LOW,HIGH; 4097 points).")
    var fitRange: String = "-8,8"

    @Flag(name: .customLong("allow-no-sites"), help: "Write the model even when no target activation is found.")
    var allowNoSites = false

    var isRequested: Bool { activation != nil }

    func validate() throws {
        if let activation, activation != "srelu" {
            throw ValidationError("--activation takes srelu (the only replacement there is), not '\(activation)'")
        }
        for target in targets.split(separator: ",") where ActivationKind(rawValue: String(target)) == nil {
            throw ValidationError("unknown activation target '\(target)'; choose from " + ActivationKind.allCases.map(\.rawValue).joined(separator: ","))
        }
        if channels != nil && channelAxis == nil { throw ValidationError("--srelu-channels goes with --srelu-channel-axis") }
        if let channelAxis, channelAxis != 1 && channelAxis != -1 { throw ValidationError("--srelu-channel-axis is 1 or -1") }
    }

    /// `A-B` or `N`, layer numbers >= 0. Every part must parse: `-3` is not layer 3.
    var layerRange: ClosedRange<Int>? {
        guard let layers else { return nil }
        let parts = layers.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }) else { return nil }
        let numbers = parts.compactMap { Int($0) }
        guard numbers.count == parts.count else { return nil }
        if numbers.count == 1 { return numbers[0] ... numbers[0] }
        if numbers.count == 2, numbers[0] <= numbers[1] { return numbers[0] ... numbers[1] }
        return nil
    }

    /// LOW,HIGH, both finite, LOW < 0 < HIGH.
    var fitBounds: ClosedRange<Double>? {
        let parts = fitRange.split(separator: ",", omittingEmptySubsequences: false)
        let numbers = parts.compactMap { Double($0) }
        guard numbers.count == 2, parts.count == 2, numbers.allSatisfy(\.isFinite), numbers[0] < 0, numbers[1] > 0 else { return nil }
        return numbers[0] ... numbers[1]
    }

    /// Values that parse but would poison the output, refused before any work with one
    /// `error:` line.
    func checkValues() throws {
        guard isRequested else { return }
        if layers != nil, layerRange == nil {
            throw CommandError("--activation-layers: takes A-B or one layer number >= 0, e.g. 0-7, not '\(layers ?? "")'")
        }
        if fitBounds == nil {
            throw CommandError("--srelu-fit-range: takes LOW,HIGH, finite, with LOW < 0 < HIGH, e.g. -8,8, not '\(fitRange)'")
        }
        if let tRight, !tRight.isFinite || tRight <= 0 {
            throw CommandError("--srelu-tr: takes a finite number > 0, not \(tRight)")
        }
        if let channels, !(1 ... Limits.width).contains(channels) {
            throw CommandError("--srelu-channels: takes a channel count from 1 to \(Limits.width), not \(channels)")
        }
        if let scope {
            do { _ = try BoundedRegex(scope) } catch let error as BoundedRegex.InvalidPattern {
                throw SReLUError.badScope(scope, reason: error.reason)
            }
        }
    }

    /// The SReLU part of the rewrite, when asked for.
    var options: SReLUOptions? {
        guard isRequested, let bounds = fitBounds else { return nil }
        return SReLUOptions(targets: targets.split(separator: ",").compactMap { ActivationKind(rawValue: String($0)) }, form: form,
                            layers: layerRange, scope: scope, channelAxis: channelAxis, channels: channels,
                            tRight: tRight ?? .greatestFiniteMagnitude, fitRange: bounds)
    }
}
