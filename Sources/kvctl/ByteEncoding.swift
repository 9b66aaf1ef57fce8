import ArgumentParser
import Foundation

/// How keys and values are written on the command line and printed: UTF-8 text with
/// \xNN escapes for other bytes (default), hexadecimal, or base64; and whether results
/// are printed as JSON lines.
struct ByteEncoding: ParsableArguments {
    @Flag(help: "Keys and values, given and printed, as hexadecimal.")
    var hex = false

    @Flag(help: "Keys and values, given and printed, as base64.")
    var base64 = false

    @Flag(help: "Print results as JSON lines: {\"key\": ..., \"value\": ...} (strings in the chosen encoding).")
    var json = false

    func validate() throws {
        if hex && base64 { throw ValidationError("--hex and --base64 exclude each other") }
    }

    /// The bytes `text` stands for; a clear error names `what` when it is malformed.
    func decode(_ text: String, _ what: String) throws -> [UInt8] {
        if hex {
            let digits = Array(text.utf8)
            guard digits.count % 2 == 0 else { throw ValidationError("malformed hex in \(what): odd number of digits in '\(text)'") }
            var bytes: [UInt8] = []
            for index in stride(from: 0, to: digits.count, by: 2) {
                guard let byte = UInt8(String(decoding: digits[index..<(index + 2)], as: UTF8.self), radix: 16) else {
                    throw ValidationError("malformed hex in \(what): '\(text)' has a non-hex digit at position \(index)")
                }
                bytes.append(byte)
            }
            return bytes
        }
        if base64 {
            guard let data = Data(base64Encoded: text) else { throw ValidationError("malformed base64 in \(what): '\(text)'") }
            return Array(data)
        }
        return try ByteEncoding.unescape(text, what)
    }

    /// Text form back to bytes: UTF-8, with `\\xNN` for any byte and `\\\\` for a backslash
    /// (exactly what `encode` writes, so output can be fed back in).
    static func unescape(_ text: String, _ what: String) throws -> [UInt8] {
        let utf8 = Array(text.utf8)
        if !utf8.contains(UInt8(ascii: "\\")) { return utf8 }  // nothing escaped
        var bytes: [UInt8] = []
        var input = utf8[...]
        while let byte = input.popFirst() {
            guard byte == UInt8(ascii: "\\") else {
                bytes.append(byte)
                continue
            }
            switch input.popFirst() {
            case UInt8(ascii: "\\"):
                bytes.append(byte)
            case UInt8(ascii: "x"):
                guard let value = ByteEncoding.hexByte(&input) else {
                    throw ValidationError("malformed escape in \(what): \\x needs two hex digits in '\(text)'")
                }
                bytes.append(value)
            default:
                throw ValidationError("malformed escape in \(what): only \\xNN and \\\\ are escapes, in '\(text)'")
            }
        }
        return bytes
    }

    /// The byte of the two hex digits at the front of `input` (consumed), or nil.
    static func hexByte(_ input: inout ArraySlice<UInt8>) -> UInt8? {
        let digits = String(decoding: input.prefix(2), as: UTF8.self)
        guard digits.count == 2, let value = UInt8(digits, radix: 16) else { return nil }
        input = input.dropFirst(2)
        return value
    }

    /// `bytes` in the chosen encoding.
    func encode(_ bytes: [UInt8]) -> String {
        if hex { return bytes.map { String(format: "%02x", $0) }.joined() }
        if base64 { return Data(bytes).base64EncodedString() }
        return displayBytes(bytes)
    }

    /// One result line: `KEY<TAB>VALUE`, or a JSON object with the fields given.
    func line(key: [UInt8]?, value: [UInt8]?) -> String {
        if json {
            var fields: [String] = []
            if let key { fields.append("\"key\": \(jsonString(encode(key)))") }
            if let value { fields.append("\"value\": \(jsonString(encode(value)))") }
            return "{" + fields.joined(separator: ", ") + "}"
        }
        return [key, value].compactMap { $0.map(encode) }.joined(separator: "\t")
    }

    private func jsonString(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 { out += String(format: "\\u%04x", scalar.value) } else { out.unicodeScalars.append(scalar) }
            }
        }
        return out + "\""
    }
}
