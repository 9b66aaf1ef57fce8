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

    @Flag(help: "Print results as JSON lines: {\"key\": ..., \"value\": ...}, UTF-8 as JSON strings, other bytes as \"key_base64\"/\"value_base64\" (with --hex or --base64: strings in that encoding).")
    var json = false

    func validate() throws {
        if hex && base64 { throw ValidationError("--hex and --base64 exclude each other") }
    }

    /// The bytes `text` stands for; a clear error names `what` when it is malformed.
    func decode(_ text: String, _ what: String) throws -> [UInt8] {
        try decode(bytes: Array(text.utf8), what)
    }

    /// The bytes the text `utf8` stands for, in the chosen encoding.
    func decode(bytes utf8: [UInt8], _ what: String) throws -> [UInt8] {
        if hex { return try TextCodec.parseHex(utf8, what) }
        if base64 { return try TextCodec.parseBase64(utf8, what) }
        return try TextCodec.parseText(utf8, what)
    }

    /// `bytes` in the chosen encoding, appended to `out`.
    func append(_ bytes: some Collection<UInt8>, to out: inout [UInt8]) {
        if hex {
            TextCodec.appendHex(bytes, to: &out)
        } else if base64 {
            TextCodec.appendBase64(bytes, to: &out)
        } else {
            TextCodec.appendText(bytes, to: &out)
        }
    }

    /// `bytes` in the chosen encoding.
    func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        append(bytes, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// One result line (no newline): `KEY<TAB>VALUE` in the chosen encoding, or a JSON
    /// object (see `appendJSON`).
    func line(key: [UInt8]?, value: [UInt8]?) -> String {
        var out: [UInt8] = []
        appendLine(key: key, value: value, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// `line(key:value:)` appended to `out`, without a newline.
    func appendLine(key: (some Collection<UInt8>)?, value: (some Collection<UInt8>)?, to out: inout [UInt8]) {
        if json {
            out.append(UInt8(ascii: "{"))
            if let key { appendJSONField("key", key, to: &out) }
            if let value {
                if key != nil { out += Array(", ".utf8) }
                appendJSONField("value", value, to: &out)
            }
            out.append(UInt8(ascii: "}"))
            return
        }
        if let key { append(key, to: &out) }
        if let value {
            if key != nil { out.append(0x09) }
            append(value, to: &out)
        }
    }

    /// `"name": "..."`: with --hex or --base64 the string holds that encoding; otherwise it
    /// is the bytes themselves as a JSON string when they are valid UTF-8, and
    /// `"name_base64": "..."` when they are not.
    private func appendJSONField(_ name: String, _ bytes: some Collection<UInt8>, to out: inout [UInt8]) {
        let bytes = Array(bytes)
        if hex || base64 {
            var encoded: [UInt8] = []
            append(bytes, to: &encoded)
            out += Array("\"\(name)\": ".utf8)
            TextCodec.appendJSONString(encoded, to: &out)
        } else if TextCodec.isValidUTF8(bytes) {
            out += Array("\"\(name)\": ".utf8)
            TextCodec.appendJSONString(bytes, to: &out)
        } else {
            out += Array("\"\(name)_base64\": ".utf8)
            var encoded: [UInt8] = []
            TextCodec.appendBase64(bytes, to: &encoded)
            TextCodec.appendJSONString(encoded, to: &out)
        }
    }

    /// The key and value of one JSON line as `appendLine` writes it (or as jq writes the
    /// same object: any spacing and field order; `key` or `key_base64`, `value` or
    /// `value_base64`).
    func parseJSONLine(_ line: [UInt8], number: Int) throws -> (key: [UInt8], value: [UInt8]) {
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(line))
        } catch {
            throw ValidationError("line \(number): expected {\"key\": \"...\", \"value\": \"...\"} (a JSON object): \((error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? "not JSON")")
        }
        guard let object = parsed as? [String: Any] else {
            throw ValidationError("line \(number): expected {\"key\": \"...\", \"value\": \"...\"} (a JSON object)")
        }
        func field(_ name: String) throws -> [UInt8] {
            if let text = object[name] as? String {
                return hex || base64 ? try decode(text, "line \(number) \(name)") : Array(text.utf8)
            }
            if let text = object[name + "_base64"] as? String {
                return try TextCodec.parseBase64(Array(text.utf8), "line \(number) \(name)_base64")
            }
            throw ValidationError("line \(number): no string field \"\(name)\" or \"\(name)_base64\"")
        }
        return (try field("key"), try field("value"))
    }
}
