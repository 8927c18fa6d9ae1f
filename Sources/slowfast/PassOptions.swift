import ArgumentParser
import SlowFastKit

/// The options of every pass `rewrite` and `plan` can run, one group per pass. A new pass adds
/// its option group here (its title is the help section) and its request to `request()`.
struct PassOptions: ParsableArguments {
    @OptionGroup(title: "Hybrid layers") var hybrid: HybridOptions
    @OptionGroup(title: "Activations") var activation: ActivationOptions

    /// The rewrite these options ask for: each chosen pass's request, and where the layers
    /// come from.
    func request() throws -> RewriteRequest {
        try hybrid.checkValues()
        try activation.checkValues()
        let requests: [(any PassRequest)?] = [hybrid.request, activation.options.map { SReLURequest($0, allowNoSites: activation.allowNoSites) }]
        return RewriteRequest(passes: requests.compactMap { $0 }, layers: hybrid.isRequested ? try hybrid.layerSource() : .discover(.auto))
    }
}
