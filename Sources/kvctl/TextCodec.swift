import ArgumentParser
import Foundation

/// How kvctl writes keys and values as text, and reads them back (the README's kvctl
/// section). Every encoder appends to a byte buffer; nothing goes through `String`
/// a byte at a time.
///
/// The text form: valid UTF-8 is itself, except that a backslash is `\\`, tab, newline and
/// carriage return are `\t`, `\n`, `\r`, and every other control byte (0x00-0x1F, 0x7F)
/// and every byte that is not part of valid UTF-8 is `\xNN`. Reading takes exactly those
/// escapes back, so text output fed back in gives the same bytes, and a line of TSV never
/// holds a raw tab or newline inside a field.
enum TextCodec {
    private static let hexDigits = Array("0123456789abcdef".utf8)

    // MARK: text

    static func appendText(_ bytes: some Collection<UInt8>, to out: inout [UInt8]) {
        let bytes = Array(bytes)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte >= 0x80 {
                if let length = utf8Length(bytes, at: index) {
                    out.append(contentsOf: bytes[index..<(index + length)])
                    index += length
                } else {
                    appendHexEscape(byte, to: &out)
                    index += 1
                }
                continue
            }
            switch byte {
            case 0x5C: out += [0x5C, 0x5C]
            case 0x09: out += [0x5C, UInt8(ascii: "t")]
            case 0x0A: out += [0x5C, UInt8(ascii: "n")]
            case 0x0D: out += [0x5C, UInt8(ascii: "r")]
            case 0x00..<0x20, 0x7F: appendHexEscape(byte, to: &out)
            default: out.append(byte)
            }
            index += 1
        }
    }

    static func text(_ bytes: some Collection<UInt8>) -> String {
        var out: [UInt8] = []
        appendText(bytes, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    private static func appendHexEscape(_ byte: UInt8, to out: inout [UInt8]) {
        out += [0x5C, UInt8(ascii: "x"), hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0xF)]]
    }

    /// The bytes of text form `text`; a malformed escape is an error naming `what`.
    static func parseText(_ text: some Collection<UInt8>, _ what: String) throws -> [UInt8] {
        let input = Array(text)
        if !input.contains(0x5C) { return input }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(input.count)
        var index = 0
        func fail(_ reason: String) -> ValidationError {
            ValidationError("malformed escape in \(what) at byte \(index): \(reason) (escapes: \\\\ \\t \\n \\r \\xNN)")
        }
        while index < input.count {
            let byte = input[index]
            guard byte == 0x5C else {
                bytes.append(byte)
                index += 1
                continue
            }
            guard index + 1 < input.count else { throw fail("a backslash ends the text") }
            switch input[index + 1] {
            case 0x5C: bytes.append(0x5C)
            case UInt8(ascii: "t"): bytes.append(0x09)
            case UInt8(ascii: "n"): bytes.append(0x0A)
            case UInt8(ascii: "r"): bytes.append(0x0D)
            case UInt8(ascii: "x"):
                guard index + 3 < input.count, let high = hexValue(input[index + 2]), let low = hexValue(input[index + 3]) else {
                    throw fail("\\x needs two hex digits")
                }
                bytes.append(high << 4 | low)
                index += 2
            default: throw fail("\\\(String(decoding: [input[index + 1]], as: UTF8.self)) is not an escape")
            }
            index += 2
        }
        return bytes
    }

    // MARK: hex and base64

    static func appendHex(_ bytes: some Collection<UInt8>, to out: inout [UInt8]) {
        out.reserveCapacity(out.count + bytes.count * 2)
        for byte in bytes { out += [hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0xF)]] }
    }

    static func parseHex(_ text: some Collection<UInt8>, _ what: String) throws -> [UInt8] {
        let digits = Array(text)
        let shown = "'\(String(decoding: digits.prefix(64), as: UTF8.self))\(digits.count > 64 ? "..." : "")'"
        guard digits.count % 2 == 0 else { throw ValidationError("malformed hex in \(what): \(shown) has an odd number of digits (\(digits.count))") }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let high = hexValue(digits[index]), let low = hexValue(digits[index + 1]) else {
                throw ValidationError("malformed hex in \(what): \(shown) has a non-hex digit at position \(index)")
            }
            bytes.append(high << 4 | low)
        }
        return bytes
    }

    static func appendBase64(_ bytes: some Collection<UInt8>, to out: inout [UInt8]) {
        out += Data(bytes).base64EncodedData()
    }

    static func parseBase64(_ text: some Collection<UInt8>, _ what: String) throws -> [UInt8] {
        guard let data = Data(base64Encoded: Data(text)) else { throw ValidationError("malformed base64 in \(what)") }
        return Array(data)
    }

    // MARK: JSON

    /// A JSON string (RFC 8259) of `utf8`, which must be valid UTF-8: `"` and `\` escaped,
    /// control characters as `\b \f \n \r \t` or `\u00XX`, everything else as itself.
    static func appendJSONString(_ utf8: some Collection<UInt8>, to out: inout [UInt8]) {
        out.append(0x22)
        for byte in utf8 {
            switch byte {
            case 0x22: out += [0x5C, 0x22]
            case 0x5C: out += [0x5C, 0x5C]
            case 0x08: out += [0x5C, UInt8(ascii: "b")]
            case 0x0C: out += [0x5C, UInt8(ascii: "f")]
            case 0x0A: out += [0x5C, UInt8(ascii: "n")]
            case 0x0D: out += [0x5C, UInt8(ascii: "r")]
            case 0x09: out += [0x5C, UInt8(ascii: "t")]
            case 0x00..<0x20: out += Array("\\u00".utf8) + [hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0xF)]]
            default: out.append(byte)
            }
        }
        out.append(0x22)
    }

    // MARK: UTF-8

    /// Whether all of `bytes` is valid UTF-8.
    static func isValidUTF8(_ bytes: [UInt8]) -> Bool {
        var index = 0
        while index < bytes.count {
            if bytes[index] < 0x80 {
                index += 1
            } else if let length = utf8Length(bytes, at: index) {
                index += length
            } else {
                return false
            }
        }
        return true
    }

    /// The length of the valid multi-byte UTF-8 sequence at `index` (lead byte >= 0x80),
    /// or nil: no overlong forms, no surrogates, nothing above U+10FFFF.
    private static func utf8Length(_ bytes: [UInt8], at index: Int) -> Int? {
        let lead = bytes[index]
        let length: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; high = 0x9F
        case 0xF0: length = 4; low = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; high = 0x8F
        default: return nil
        }
        guard index + length <= bytes.count else { return nil }
        guard (low...high).contains(bytes[index + 1]) else { return nil }
        for offset in 2..<length where !(0x80...0xBF).contains(bytes[index + offset]) { return nil }
        return length
    }

    private static func hexValue(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return digit - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
