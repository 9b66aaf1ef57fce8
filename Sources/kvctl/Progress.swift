import Dispatch
import Foundation

/// A count of work done, shown on stderr while a long command runs, only when stderr is
/// a terminal (scripts and pipes see nothing), at most every 200 ms.
struct Progress {
    private let label: String
    private let enabled = isatty(STDERR_FILENO) == 1
    private var lastShown: UInt64 = 0

    init(_ label: String) { self.label = label }

    mutating func update(_ count: Int) {
        guard enabled else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        guard now - lastShown > 200_000_000 else { return }
        lastShown = now
        FileHandle.standardError.write(Data("\r\(label): \(count)".utf8))
    }

    func finish(_ count: Int) {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\r\(label): \(count), done\n".utf8))
    }
}
