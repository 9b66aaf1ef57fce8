import XCTest

@testable import KVEngine

/// How the default cache finds the memory the process may use.
final class MemoryLimitTests: XCTestCase {
    func testCgroupV2LimitOfTheProcessGroup() {
        let files = ["/sys/fs/cgroup/app.slice/memory.max": "2147483648\n", "/sys/fs/cgroup/memory.max": "max\n"]
        XCTAssertEqual(MemoryLimit.cgroupBytes(procSelfCgroup: "0::/app.slice\n", read: { files[$0] }), 2 << 30)
    }

    func testCgroupV2WithoutALimit() {
        let files = ["/sys/fs/cgroup/memory.max": "max\n"]
        XCTAssertNil(MemoryLimit.cgroupBytes(procSelfCgroup: "0::/\n", read: { files[$0] }))
    }

    func testCgroupV1LimitAndItsNoLimitValue() {
        let cgroup = "9:name=systemd:/\n4:memory:/job/7\n1:cpu,cpuacct:/\n0::/\n"
        var files = ["/sys/fs/cgroup/memory/job/7/memory.limit_in_bytes": "536870912\n",
                     "/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n"]
        XCTAssertEqual(MemoryLimit.cgroupBytes(procSelfCgroup: cgroup, read: { files[$0] }), 512 << 20)
        files["/sys/fs/cgroup/memory/job/7/memory.limit_in_bytes"] = "9223372036854771712\n"
        XCTAssertNil(MemoryLimit.cgroupBytes(procSelfCgroup: cgroup, read: { files[$0] }), "v1 says 'no limit' with a huge number")
    }

    func testTheDefaultCacheIsAShareOfMemory() {
        let memory = MemoryLimit.processBytes
        XCTAssertGreaterThan(memory, 0, "physical memory is readable")
        XCTAssertEqual(Options.defaultCacheBytes, max(32 << 20, memory / 4))
        XCTAssertEqual(Options().cacheBytes, Options.defaultCacheBytes)
    }
}
