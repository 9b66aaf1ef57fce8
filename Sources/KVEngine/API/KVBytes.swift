import Foundation

/// What a key or a value can be given as: its bytes, lent for the length of a call.
///
/// `[UInt8]`, `ArraySlice<UInt8>`, `ContiguousArray<UInt8>`, `Data`, `String`,
/// `Substring` (their UTF-8), `String.UTF8View`, `UnsafeRawBufferPointer` and
/// `UnsafeBufferPointer<UInt8>` conform. Any other `ContiguousBytes` type conforms with
/// an empty extension (`extension MyBytes: KVBytes {}`): the requirement has a default
/// for them.
public protocol KVBytes {
    /// Calls `body` with the bytes; the buffer is valid only during the call.
    func withKVBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}

extension KVBytes where Self: ContiguousBytes {
    /// The bytes `withUnsafeBytes` lends.
    public func withKVBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeBytes(body)
    }
}

extension Array: KVBytes where Element == UInt8 {}
extension ArraySlice: KVBytes where Element == UInt8 {}
extension ContiguousArray: KVBytes where Element == UInt8 {}
extension Data: KVBytes {}
extension UnsafeRawBufferPointer: KVBytes {}
extension UnsafeBufferPointer: KVBytes where Element == UInt8 {}

extension String: KVBytes {
    /// The string's UTF-8.
    public func withKVBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var string = self
        return try string.withUTF8 { try body(UnsafeRawBufferPointer($0)) }
    }
}

extension Substring: KVBytes {
    /// The substring's UTF-8.
    public func withKVBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var string = self
        return try string.withUTF8 { try body(UnsafeRawBufferPointer($0)) }
    }
}

extension String.UTF8View: KVBytes {
    /// The view's bytes (copied first when the string is not stored as contiguous UTF-8).
    public func withKVBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        if let result = try withContiguousStorageIfAvailable({ try body(UnsafeRawBufferPointer($0)) }) {
            return result
        }
        return try Array(self).withUnsafeBytes(body)
    }
}

extension KVBytes {
    /// The bytes as an array: an array is itself (found by comparing type metadata, a
    /// pointer compare, rather than by a dynamic cast), anything else a copy.
    var kvArray: [UInt8] {
        if Self.self == [UInt8].self { return unsafeBitCast(self, to: [UInt8].self) }
        return withKVBytes { Array($0) }
    }
}

/// What a stored value can be read back as: `[UInt8]`, `Data`, `String` (UTF-8, checked),
/// `ContiguousArray<UInt8>`.
///
///     let data = try db.get(key, as: Data.self)      // Data?
///     let text = try db.get(key, as: String.self)    // String? (.decoding if not UTF-8)
public protocol KVValue {
    /// The value made from stored bytes; throws ``KVError/Code/decoding`` when the bytes
    /// are not a value of this type.
    init(kvBytes: UnsafeRawBufferPointer) throws(KVError)
}

extension Array: KVValue where Element == UInt8 {
    /// A copy of the bytes.
    public init(kvBytes: UnsafeRawBufferPointer) { self.init(kvBytes) }
}

extension ContiguousArray: KVValue where Element == UInt8 {
    /// A copy of the bytes.
    public init(kvBytes: UnsafeRawBufferPointer) { self.init(kvBytes) }
}

extension Data: KVValue {
    /// A copy of the bytes.
    public init(kvBytes: UnsafeRawBufferPointer) { self.init(kvBytes) }
}

extension String: KVValue {
    /// The bytes as UTF-8; throws ``KVError/Code/decoding`` when they are not valid UTF-8.
    public init(kvBytes: UnsafeRawBufferPointer) throws(KVError) {
        guard let string = String(validating: kvBytes, as: UTF8.self) else {
            throw KVError(.decoding, "the value of \(kvBytes.count) bytes is not valid UTF-8; read it as [UInt8] or Data")
        }
        self = string
    }
}

/// An encoder for `put(_:encoding:using:durability:)` and the other `Codable`
/// paths: `JSONEncoder` (the default) and `PropertyListEncoder` conform, and so can any
/// encoder with this method.
public protocol KVValueEncoder {
    /// The bytes of `value`.
    func encode<T: Encodable>(_ value: T) throws -> Data
}

/// A decoder for `get(_:decoding:using:snapshot:)`: `JSONDecoder` (the
/// default) and `PropertyListDecoder` conform.
public protocol KVValueDecoder {
    /// The value of type `type` encoded in `data`.
    func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T
}

extension JSONEncoder: KVValueEncoder {}
extension JSONDecoder: KVValueDecoder {}
extension PropertyListEncoder: KVValueEncoder {}
extension PropertyListDecoder: KVValueDecoder {}

/// The `Codable` steps shared by the database and transactions, each failure a
/// ``KVError/Code/decoding`` error saying what failed and why.
enum ValueCoding {
    static func encode<T: Encodable>(_ value: T, using encoder: some KVValueEncoder) throws(KVError) -> Data {
        do {
            return try encoder.encode(value)
        } catch {
            throw KVError(.decoding, "could not encode a \(T.self): \(error)")
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], key: [UInt8], using decoder: some KVValueDecoder) throws(KVError) -> T {
        do {
            return try decoder.decode(type, from: Data(bytes))
        } catch {
            throw KVError(.decoding, "the value of \(KeyText.describe(key)) (\(bytes.count) bytes) does not decode as a \(T.self): \(error)")
        }
    }
}

/// Keys in messages: UTF-8 text quoted when printable, else hex, cut at 64 bytes.
enum KeyText {
    static func describe(_ key: [UInt8]) -> String {
        let shown = key.prefix(64)
        let more = key.count > 64 ? "... (\(key.count) bytes)" : ""
        if let text = String(validating: shown, as: UTF8.self), text.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) {
            return "key \"\(text)\"\(more)"
        }
        let digits = Array("0123456789abcdef".utf8)
        var hex: [UInt8] = []
        for byte in shown { hex += [digits[Int(byte >> 4)], digits[Int(byte & 0xF)]] }
        return "key 0x\(String(decoding: hex, as: UTF8.self))\(more)"
    }
}
