import Foundation

/// A regular expression from a flag or a file, run with bounded work.
///
/// The regex engine (ICU, through NSRegularExpression) has no step or time limit, so every
/// pattern that comes from outside (an adapter's `layerIndex`, `--activation-scope`) is built
/// here: a pattern that could backtrack exponentially is refused when it is compiled, and a
/// text longer than `maxTextLength` is never searched (it does not match). With both, one
/// search costs at most polynomial time in 4 KiB.
public struct BoundedRegex {
    private let regex: NSRegularExpression

    /// Compiles `pattern`; throws `InvalidPattern` with the reason it is refused.
    public init(_ pattern: String) throws {
        if let reason = BoundedRegex.backtrackingRisk(pattern) { throw InvalidPattern(pattern: pattern, reason: reason) }
        guard let regex = try? NSRegularExpression(pattern: pattern) else { throw InvalidPattern(pattern: pattern, reason: nil) }
        self.regex = regex
    }

    /// Every match in `text`; none when the text is longer than `maxTextLength`.
    public func matches(in text: String) -> [NSTextCheckingResult] {
        guard text.utf8.count <= BoundedRegex.maxTextLength else { return [] }
        return regex.matches(in: text, range: NSRange(text.startIndex..., in: text))
    }

    /// Whether `text` (at most `maxTextLength` bytes) contains a match.
    public func hasMatch(in text: String) -> Bool {
        guard text.utf8.count <= BoundedRegex.maxTextLength else { return false }
        return regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
    }

    /// A pattern that was refused: `reason` when it could backtrack exponentially, nil when it
    /// does not compile.
    public struct InvalidPattern: Error {
        public let pattern: String
        public let reason: String?
    }

    /// Texts longer than this are not searched: a layer path is far shorter, and the regex
    /// engine's time grows with the text.
    public static let maxTextLength = 4096

    /// Why `pattern` could backtrack exponentially, or nil. The regex engine has no step limit,
    /// so patterns from outside may not repeat a group that itself repeats or
    /// alternates (`(a+)+`, `(a|aa)*`), nor use back-references.
    static func backtrackingRisk(_ pattern: String) -> String? {
        let characters = Array(pattern)
        // Per open group: whether it holds a quantifier or an alternation.
        var groups: [Bool] = [false]
        var inClass = false
        var index = 0
        func repeats(_ at: Int) -> Bool {
            at < characters.count && (characters[at] == "*" || characters[at] == "+" || characters[at] == "{")
        }
        while index < characters.count {
            let character = characters[index]
            if character == "\\" {
                if !inClass, index + 1 < characters.count, let digit = characters[index + 1].wholeNumberValue, digit > 0 {
                    return "it uses a back-reference"
                }
                index += 2
                continue
            }
            if inClass {
                if character == "]" { inClass = false }
                index += 1
                continue
            }
            switch character {
            case "[":
                inClass = true
            case "(":
                groups.append(false)
                if index + 2 < characters.count, characters[index + 1] == "?" { index += 2 }  // (?:, (?=, (?<name>
            case ")":
                guard groups.count > 1 else { return nil }  // unbalanced: the compiler refuses it
                let risky = groups.removeLast()
                if risky {
                    if repeats(index + 1) { return "a repeated group repeats or alternates inside (exponential backtracking)" }
                    groups[groups.count - 1] = true
                }
            case "|", "*", "+", "{", "?":
                groups[groups.count - 1] = true
            default:
                break
            }
            index += 1
        }
        return nil
    }

}
