import SlowFastWeights
import SlowFastIR
import SlowFastAdapters
/// The four SReLU parameters (docs/DESIGN.md §4):
///
///     f(x) = t_r + a_r (x - t_r)   if x >= t_r
///            x                     if t_l < x < t_r
///            t_l + a_l (x - t_l)   if x <= t_l
public struct SReLUParameters: Equatable, Sendable {
    public var tLeft: Float
    public var aLeft: Float
    public var tRight: Float
    public var aRight: Float

    public init(tLeft: Float, aLeft: Float, tRight: Float, aRight: Float) {
        self.tLeft = tLeft
        self.aLeft = aLeft
        self.tRight = tRight
        self.aRight = aRight
    }

    /// The paper's "freezing" init, degenerated to a leaky ReLU: t_l = 0, a_l = slope, a_r = 1,
    /// t_r above every input (`tRight`; default the largest finite float, so no input reaches
    /// it and x - t_r cannot overflow).
    public static func freezing(slope: Float, tRight: Float = .greatestFiniteMagnitude) -> SReLUParameters {
        SReLUParameters(tLeft: 0, aLeft: slope, tRight: tRight, aRight: 1)
    }

    func evaluate(_ x: Double) -> Double {
        let tl = Double(tLeft), al = Double(aLeft), tr = Double(tRight), ar = Double(aRight)
        if x >= tr { return tr + ar * (x - tr) }
        if x <= tl { return tl + al * (x - tl) }
        return x
    }
}

/// A least-squares fit of SReLU to a smooth activation, with its error on the fit grid.
public struct SReLUFit: Sendable {
    public let parameters: SReLUParameters
    public let maxAbsError: Double
    public let meanAbsError: Double
    public let range: ClosedRange<Double>
    public let points: Int

    /// The grid the fit uses and its error is measured on: `points` evenly spaced values
    /// over `range`, ends included (numpy's linspace).
    public static func grid(_ range: ClosedRange<Double>, points: Int) -> [Double] {
        (0 ..< points).map { range.lowerBound + (range.upperBound - range.lowerBound) * Double($0) / Double(points - 1) }
    }

    /// Fits t_l, a_l, t_r, a_r to `kind` over `range`: for every pair of breakpoints on the
    /// grid (t_l <= 0 <= t_r), the slopes have closed-form least-squares values, and prefix
    /// sums make each pair O(1); the pair with the least squared error wins. The error is then
    /// measured with the parameters rounded to float32, as the model will hold them.
    public static func fit(_ kind: ActivationKind, range: ClosedRange<Double> = -8 ... 8, points: Int = 4097) -> SReLUFit {
        let xs = grid(range, points: points)
        let gs = xs.map(kind.evaluate)
        // Prefix sums over the grid: x, x^2, g, g*x, g^2, (g - x)^2.
        var sx = [0.0], sxx = [0.0], sg = [0.0], sgx = [0.0], sgg = [0.0], smid = [0.0]
        for (x, g) in zip(xs, gs) {
            sx.append(sx.last! + x); sxx.append(sxx.last! + x * x); sg.append(sg.last! + g)
            sgx.append(sgx.last! + g * x); sgg.append(sgg.last! + g * g); smid.append(smid.last! + (g - x) * (g - x))
        }
        func sum(_ prefix: [Double], _ from: Int, _ to: Int) -> Double { prefix[to] - prefix[from] }  // [from, to)
        // Error of g ≈ t + a (x - t) over points [from, to), with the best a; returns (error, a).
        func tail(_ t: Double, _ from: Int, _ to: Int) -> (Double, Double) {
            guard to > from else { return (0, 1) }
            let n = Double(to - from)
            // u = x - t, v = g - t: a = Σuv / Σu², error = Σv² - (Σuv)² / Σu²
            let suu = sum(sxx, from, to) - 2 * t * sum(sx, from, to) + n * t * t
            let suv = sum(sgx, from, to) - t * sum(sg, from, to) - t * sum(sx, from, to) + n * t * t
            let svv = sum(sgg, from, to) - 2 * t * sum(sg, from, to) + n * t * t
            guard suu > 1e-12 else { return (svv, 1) }
            let a = suv / suu
            return (max(svv - suv * suv / suu, 0), a)
        }
        let zero = xs.firstIndex { $0 >= 0 } ?? points / 2
        let step = max(1, points / 1024)
        var best = (error: Double.infinity, left: 0, right: points - 1, aLeft: 1.0, aRight: 1.0)
        for left in stride(from: 0, through: zero, by: step) {
            // Points x <= t_l follow the left line (the breakpoint itself is on both pieces).
            let (leftError, aLeft) = tail(xs[left], 0, left + 1)
            for right in stride(from: zero, to: points, by: step) where right > left {
                let (rightError, aRight) = tail(xs[right], right, points)
                let error = leftError + rightError + sum(smid, left + 1, right)
                if error < best.error { best = (error, left, right, aLeft, aRight) }
            }
        }
        let parameters = SReLUParameters(tLeft: Float(xs[best.left]), aLeft: Float(best.aLeft),
                                         tRight: Float(xs[best.right]), aRight: Float(best.aRight))
        return measured(kind, parameters, range: range, points: points)
    }

    /// `parameters` with their error against `kind` on the grid.
    public static func measured(_ kind: ActivationKind, _ parameters: SReLUParameters, range: ClosedRange<Double>, points: Int) -> SReLUFit {
        let errors = grid(range, points: points).map { abs(parameters.evaluate($0) - kind.evaluate($0)) }
        return SReLUFit(parameters: parameters, maxAbsError: errors.max() ?? 0,
                        meanAbsError: errors.reduce(0, +) / Double(errors.count), range: range, points: points)
    }

    /// The fit as it will be stored in `type`: parameters rounded to it, error measured again.
    public func stored(as type: ElementType, kind: ActivationKind) -> SReLUFit {
        guard type == .float16 || type == .bfloat16 else { return self }
        func round(_ value: Float) -> Float {
            type == .float16 ? Float(Float16(value)) : Float(bitPattern: UInt32(TensorBytes.bfloat16Bits(value)) << 16)
        }
        let p = parameters
        return SReLUFit.measured(kind, SReLUParameters(tLeft: round(p.tLeft), aLeft: round(p.aLeft), tRight: round(p.tRight),
                                                       aRight: round(p.aRight)), range: range, points: points)
    }
}
