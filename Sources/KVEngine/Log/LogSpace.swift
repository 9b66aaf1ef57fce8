/// The room ahead of a log's tail: the reservation (`fallocate`, grown a step at a time as
/// the log fills) and the zero-filled region inside it. A value owned by its `LogWriter`,
/// changed only under the writer's lock; it does no I/O, it plans what chains write.
///
/// Why zero-fill: on ext4 the first write into fallocated space is an extent conversion
/// that each fdatasync journals; writing zeros ahead of the tail, in the chain that also
/// carries data, lets later commits overwrite written blocks and keeps their fdatasyncs
/// cheap (measured: about twice the fdatasync rate).
///
/// Invariants:
/// - The zero-fill stays inside the confirmed reservation (`reservedBytes`): past it, a
///   zero-fill could take the space a write needs.
/// - At most one zero-fill is in flight, and no chain writes data at or past its start
///   until it completes (`blocksData(endingAt:)`), so zeros never land on records.
/// - A refused reservation stops further ones: the log then grows as it is written.
struct LogSpace {
    /// Zeros written ahead of the tail at a time.
    static let zeroChunkBytes = 1 << 20

    /// Bytes by which the reservation grows (0: the log grows as it is written).
    let reservationStep: Int64
    /// End of the reservation asked for, and of the part confirmed.
    private(set) var preallocatedBytes: Int64
    private(set) var reservedBytes: Int64
    /// End of the region written with zeros or data: writes below it overwrite written
    /// blocks, so their fdatasync need not journal an extent conversion.
    private(set) var zeroedBytes: Int64
    /// Start of the zero-fill a chain in flight is writing.
    private(set) var zeroInFlightFrom: Int64?
    /// `fallocate` requests not yet completed (a log closes only when none is: one
    /// finishing after the final truncation would grow the log again).
    private(set) var reservationsInFlight = 0
    private var reservationsStopped = false

    /// The space of a new log: `reserved` bytes fallocated, the header page and `zeroed`
    /// bytes after it written.
    init(reserved: Int64, zeroed: Int64, reservationStep: Int64) {
        self.reservationStep = reservationStep
        preallocatedBytes = reserved
        reservedBytes = reserved
        zeroedBytes = Int64(LogFormat.pageBytes) + zeroed
    }

    /// Whether a chain of data ending at `end` must wait for the zero-fill in flight.
    func blocksData(endingAt end: Int64) -> Bool {
        guard let from = zeroInFlightFrom else { return false }
        return end > from
    }

    /// Plans the space work of a chain whose data ends at `end`: the zero-fill it carries
    /// (only a chain that goes out `alone` carries one, and only when the zeroed region is
    /// within a chunk of `end`) and the reservation to ask for beside it.
    mutating func plan(chainEndingAt end: Int64, alone: Bool) -> (zeroFill: (from: Int64, bytes: Int64)?, reserve: (offset: Int64, length: Int64)?) {
        precondition(!blocksData(endingAt: end), "no data past a zero-fill in flight")
        zeroedBytes = max(zeroedBytes, end)
        var zeroFill: (Int64, Int64)? = nil
        let bytes = min(Int64(LogSpace.zeroChunkBytes), reservedBytes - zeroedBytes)
        if alone && zeroedBytes < end + Int64(LogSpace.zeroChunkBytes) && bytes > 0 {
            zeroFill = (zeroedBytes, bytes)
            zeroInFlightFrom = zeroedBytes
            zeroedBytes += bytes
        }
        var reserve: (Int64, Int64)? = nil
        if reservationStep > 0 && !reservationsStopped && end + Int64(LogPages.blockBytes * 4) > preallocatedBytes {
            reserve = (preallocatedBytes, reservationStep)
            preallocatedBytes += reservationStep
            reservationsInFlight += 1
        }
        return (zeroFill, reserve)
    }

    /// The chain that carried the zero-fill has retired.
    mutating func zeroFillRetired() {
        zeroInFlightFrom = nil
    }

    /// A reservation `plan` asked for has completed.
    mutating func reservationCompleted(offset: Int64, length: Int64, succeeded: Bool) {
        precondition(reservationsInFlight > 0, "a reservation completes once")
        reservationsInFlight -= 1
        if succeeded {
            // Only a reservation that joins the confirmed one extends it (one refused
            // before it leaves a hole the zero-fill must not enter).
            if offset <= reservedBytes { reservedBytes = max(reservedBytes, offset + length) }
        } else {
            reservationsStopped = true
        }
    }
}
