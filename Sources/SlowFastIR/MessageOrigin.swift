/// The decoded message an IR object was read from, as an opaque handle.
///
/// The IR never looks inside it. Serialization leaves one on every object it reads so that a
/// rewrite writes back the fields the IR does not model (and unknown fields) exactly as they
/// were; an object a pass creates has none.
public protocol MessageOrigin {}
