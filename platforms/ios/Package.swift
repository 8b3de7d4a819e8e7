// swift-tools-version:5.7
// The Swift wrapper over Edgespec.xcframework (built by build-xcframework.sh). Not built in
// edgespec's CI; see README.md.
import PackageDescription

let package = Package(
    name: "Edgespec",
    platforms: [.iOS(.v15)],
    products: [.library(name: "Edgespec", targets: ["Edgespec"])],
    targets: [
        .binaryTarget(name: "EdgespecC", path: "build/Edgespec.xcframework"),
        .target(name: "Edgespec", dependencies: ["EdgespecC"]),
    ]
)
