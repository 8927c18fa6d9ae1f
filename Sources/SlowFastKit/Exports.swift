// One import gives a library user every room: `import SlowFastKit`.
@_exported import SlowFastAdapters
@_exported import SlowFastValues
@_exported import SlowFastCheckpoints
@_exported import SlowFastIR
@_exported import SlowFastPasses
@_exported import SlowFastSerialization
@_exported import SlowFastTokens
@_exported import SlowFastWeights
