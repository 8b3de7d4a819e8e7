// A small Swift API over the edgespec C ABI (module EdgespecC from Edgespec.xcframework).
// Not built in edgespec's CI; see platforms/ios/README.md.
import EdgespecC

/// A failed call: `status` is an EDGESPEC_STATUS_* code, `message` edgespec's explanation.
public struct EdgespecError: Error, CustomStringConvertible {
    public let status: Int32
    public let message: String
    public var description: String { "edgespec error \(status): \(message)" }
    /// EDGESPEC_STATUS_CANCELLED: the generation was stopped by `Session.cancel()`.
    public static let cancelled: Int32 = 10
}

/// Throw the thread's last error unless `status` is EDGESPEC_STATUS_OK (0).
private func check(_ status: Int32) throws {
    if status != 0 {
        throw EdgespecError(status: status, message: String(cString: edgespec_last_error()))
    }
}

/// A loaded model (weights memory-mapped). Safe to share between threads.
public final class Model {
    let handle: OpaquePointer

    public init(path: String, threads: UInt32 = 0, contextLength: UInt32 = 0, memoryBudgetBytes: UInt64 = 0) throws {
        var params = edgespec_model_params_default()
        params.n_threads = threads
        params.n_ctx = contextLength
        params.memory_budget_bytes = memoryBudgetBytes
        var out: OpaquePointer?
        try check(edgespec_model_load(path, &params, &out))
        guard let h = out else { throw EdgespecError(status: 99, message: "no handle") }
        handle = h
    }

    deinit { edgespec_model_free(handle) }
}

/// Figures of one generation; `energyJoules` is nil until a power meter is wired in.
public struct Stats {
    public let promptTokens: UInt64, generatedTokens: UInt64, forwardPasses: UInt64
    public let draftedTokens: UInt64, acceptedTokens: UInt64
    public let prefillTokensPerSecond: Double, decodeTokensPerSecond: Double, acceptanceRate: Double
    public let energyJoules: Double?
}

/// Holds the Swift closure the C callback forwards to.
private final class PieceSink {
    let onPiece: (String) -> Bool
    init(_ f: @escaping (String) -> Bool) { onPiece = f }
}

/// A conversation: one call at a time; `cancel()` may be called from any thread.
public final class Session {
    private let handle: OpaquePointer

    public init(model: Model) throws {
        var out: OpaquePointer?
        try check(edgespec_session_create(model.handle, &out))
        guard let h = out else { throw EdgespecError(status: 99, message: "no handle") }
        handle = h
    }

    deinit { edgespec_session_free(handle) }

    /// Continue the context with `prompt`; `onPiece` gets text as it comes and returns false to stop.
    @discardableResult
    public func generate(_ prompt: String, maxTokens: UInt32 = 256, strategy: String = "plain",
                         temperature: Float = 0.8, seed: UInt64 = 0x5EED,
                         onPiece: @escaping (String) -> Bool) throws -> Stats {
        try run(prompt, chat: false, maxTokens, strategy, temperature, seed, onPiece)
    }

    /// One chat turn through the model's template.
    @discardableResult
    public func chat(_ message: String, maxTokens: UInt32 = 256, strategy: String = "plain",
                     temperature: Float = 0.8, seed: UInt64 = 0x5EED,
                     onPiece: @escaping (String) -> Bool) throws -> Stats {
        try run(message, chat: true, maxTokens, strategy, temperature, seed, onPiece)
    }

    /// Stop the running generation; it then throws `EdgespecError` with status `cancelled`.
    public func cancel() { edgespec_cancel(handle) }

    public func reset() throws { try check(edgespec_session_reset(handle)) }

    private func run(_ text: String, chat: Bool, _ maxTokens: UInt32, _ strategy: String, _ temperature: Float,
                     _ seed: UInt64, _ onPiece: @escaping (String) -> Bool) throws -> Stats {
        var params = edgespec_generate_params_default()
        params.max_tokens = maxTokens
        params.sampling.temperature = temperature
        params.sampling.seed = seed
        var id: Int32 = 0
        try check(edgespec_strategy_from_name(strategy, &id))
        params.strategy = id
        let sink = PieceSink(onPiece)
        let userData = Unmanaged.passUnretained(sink).toOpaque()
        // A C function pointer cannot capture: the closure travels through user_data.
        let callback: EdgespecTokenCallback = { piece, len, userData in
            guard let piece = piece, let userData = userData else { return false }
            let sink = Unmanaged<PieceSink>.fromOpaque(userData).takeUnretainedValue()
            let bytes = UnsafeRawBufferPointer(start: piece, count: len)
            return sink.onPiece(String(decoding: bytes, as: UTF8.self))
        }
        let status: Int32 = withExtendedLifetime(sink) {
            chat ? edgespec_chat(handle, text, &params, callback, userData)
                 : edgespec_generate(handle, text, &params, callback, userData)
        }
        try check(status)
        var s = EdgespecStats()
        try check(edgespec_session_stats(handle, &s))
        return Stats(promptTokens: s.prompt_tokens, generatedTokens: s.generated_tokens,
                     forwardPasses: s.forward_passes, draftedTokens: s.drafted_tokens,
                     acceptedTokens: s.accepted_tokens, prefillTokensPerSecond: s.prefill_tokens_per_s,
                     decodeTokensPerSecond: s.decode_tokens_per_s, acceptanceRate: s.acceptance_rate,
                     energyJoules: s.has_energy ? s.energy_j : nil)
    }
}
