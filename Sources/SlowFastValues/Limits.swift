/// Every bound on a number that comes from outside (a model file, a layout, a weight map, a
/// checkpoint, a flag), in one place. Each is far above any real model or video and small
/// enough that the arithmetic done with it cannot overflow; a number past its bound is
/// refused by name where it is read.
public enum Limits {
    // Read from files (models, layouts, weight maps).
    /// A projection's rows or columns, a hidden size, a channel count: 2^24.
    public static let width = 1 << 24
    /// Attention heads and head_dim: 2^16.
    public static let heads = 1 << 16
    /// Decoder layers, and a layer's index: 2^12.
    public static let layers = 1 << 12
    /// Vocabulary rows: 2^26.
    public static let vocab = 1 << 26
    /// A quantized weight's block: a power of two from 16 to 2^16.
    public static let blockSizes = 16 ... 1 << 16
    /// A weight map or layer description read whole: 256 MiB (a 70B model's map is under 1 MB).
    public static let descriptionBytes = 1 << 28
    /// Rows of one part of a packed tensor in a weight map, and parts per tensor.
    public static let partRows = 1 << 32, parts = 1 << 16

    // Given on the command line, where the token and cost arithmetic multiplies them (frames
    // by grid by width, tokens squared): tighter than what a file may hold.
    /// Video frames (and fast-rule strides and kernels).
    public static let frames = 1 << 16
    /// A feature grid's height or width, and a pooling size.
    public static let grid = 1 << 12
    /// A feature or hidden width given as a flag.
    public static let flagWidth = 1 << 17
    /// Heads given as a flag.
    public static let flagHeads = 1 << 12
    /// A vocabulary given as a flag.
    public static let flagVocab = 1 << 24
    /// Text tokens of a prompt.
    public static let textTokens = 1 << 20
}
