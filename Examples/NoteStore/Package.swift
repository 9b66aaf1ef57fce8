// swift-tools-version:6.1

// An application that uses KVEngine the way its users would: as a package dependency.
// `make test` builds and runs it, so a change that breaks the public API fails the suite.
import PackageDescription

let package = Package(
    name: "NoteStore",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "KVEngine", path: "../.."),
    ],
    targets: [
        .executableTarget(
            name: "NoteStore",
            dependencies: [.product(name: "KVEngine", package: "KVEngine")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
