/// The version of SlowFastKit and the `slowfast` tool (semantic versioning; raised with every
/// release). Written nowhere into models: output bytes do not depend on it.
public enum SlowFastVersion {
    public static let string = "0.4.0"
}
