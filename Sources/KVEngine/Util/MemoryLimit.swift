import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The memory this process may use: its cgroup's limit (cgroup v2 `memory.max`, else v1
/// `memory.limit_in_bytes`) when it has one below physical memory, else physical memory.
/// What the default block cache is sized from (`Options.defaultCacheBytes`): with O_DIRECT
/// the engine has no page cache under it, so its own cache plays that part.
enum MemoryLimit {
    /// Bytes of physical memory.
    static var physicalBytes: Int {
        let pages = sysconf(Int32(_SC_PHYS_PAGES))
        let size = sysconf(Int32(_SC_PAGESIZE))
        return pages > 0 && size > 0 ? pages * size : 0
    }

    /// The tightest limit found among the cgroup files that name this process's group, nil
    /// when none is set (the "max" of v2, or v1's near-`Int64.max` for "none").
    static func cgroupBytes(
        procSelfCgroup: String? = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8),
        read: (String) -> String? = { try? String(contentsOfFile: $0, encoding: .utf8) }
    ) -> Int? {
        var candidates: [String] = []
        for line in (procSelfCgroup ?? "").split(separator: "\n") {
            // "hierarchy-id:controllers:path"; v2 is "0::/path".
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let group = String(fields[2])
            if fields[0] == "0" && fields[1].isEmpty {
                candidates += ["/sys/fs/cgroup\(group)/memory.max", "/sys/fs/cgroup/memory.max"]
            } else if fields[1].split(separator: ",").contains("memory") {
                candidates += ["/sys/fs/cgroup/memory\(group)/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
            }
        }
        var limit: Int? = nil
        for path in candidates {
            guard let text = read(path)?.trimmingCharacters(in: .whitespacesAndNewlines),
                let bytes = Int(text), bytes > 0, bytes < Int.max / 2
            else { continue }
            limit = min(limit ?? bytes, bytes)
        }
        return limit
    }

    /// The cgroup limit when it is below physical memory, else physical memory (0 when
    /// neither can be read).
    static var processBytes: Int {
        let physical = physicalBytes
        guard let cgroup = cgroupBytes() else { return physical }
        return physical > 0 ? min(cgroup, physical) : cgroup
    }
}
