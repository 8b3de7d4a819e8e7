// A small Kotlin API over the edgespec C ABI (through jni/edgespec_jni.c). Not built in
// edgespec's CI; see platforms/android/README.md.
package dev.edgespec

import java.io.Closeable

/** A failed call: [status] is an EDGESPEC_STATUS_* code, [message] edgespec's explanation. */
class EdgespecException(val status: Int, message: String) : Exception(message)

/** Figures of one generation; energy is null until a power meter is wired in. */
data class Stats(
    val strategy: Int, val stopReason: Int, val promptTokens: Long, val generatedTokens: Long,
    val forwardPasses: Long, val draftedTokens: Long, val acceptedTokens: Long,
    val prefillTokensPerS: Double, val decodeTokensPerS: Double, val acceptanceRate: Double,
    val energyJ: Double?,
)

/** Receives UTF-8 pieces from native code; returns false to stop. */
internal fun interface PieceSink { fun onPiece(utf8: ByteArray): Boolean }

internal object Native {
    init { System.loadLibrary("edgespec_jni") }
    const val STATUS_OK = 0
    const val STATUS_CANCELLED = 10
    @JvmStatic external fun lastError(): String
    @JvmStatic external fun strategyId(name: ByteArray): Int
    @JvmStatic external fun modelLoad(path: ByteArray, threads: Int, ctx: Int, budget: Long, out: LongArray): Int
    @JvmStatic external fun modelFree(model: Long)
    @JvmStatic external fun sessionCreate(model: Long, out: LongArray): Int
    @JvmStatic external fun sessionFree(session: Long)
    @JvmStatic external fun cancel(session: Long)
    @JvmStatic external fun reset(session: Long): Int
    @JvmStatic external fun generate(
        session: Long, prompt: ByteArray, chat: Boolean, maxTokens: Int, strategy: Int,
        temperature: Float, seed: Long, sink: PieceSink, stats: DoubleArray,
    ): Int

    fun check(status: Int) { if (status != STATUS_OK) throw EdgespecException(status, lastError()) }
}

/** A loaded model (weights memory-mapped). Thread-safe; close it when done. */
class Model(path: String, threads: Int = 0, contextLength: Int = 0, memoryBudgetBytes: Long = 0) : Closeable {
    internal var handle: Long

    init {
        val out = LongArray(1)
        Native.check(Native.modelLoad(path.toByteArray(Charsets.UTF_8), threads, contextLength, memoryBudgetBytes, out))
        handle = out[0]
    }

    override fun close() { Native.modelFree(handle); handle = 0 }
}

/** A conversation: one call at a time; [cancel] may be called from any thread. */
class Session(model: Model) : Closeable {
    private var handle: Long

    init {
        val out = LongArray(1)
        Native.check(Native.sessionCreate(model.handle, out))
        handle = out[0]
    }

    /** Continue the context with [prompt]; [onPiece] gets text as it comes and returns false to stop. */
    fun generate(prompt: String, maxTokens: Int = 256, strategy: String = "plain", temperature: Float = 0.8f,
                 seed: Long = 0x5EED, onPiece: (String) -> Boolean): Stats =
        run(prompt, false, maxTokens, strategy, temperature, seed, onPiece)

    /** One chat turn through the model's template. */
    fun chat(message: String, maxTokens: Int = 256, strategy: String = "plain", temperature: Float = 0.8f,
             seed: Long = 0x5EED, onPiece: (String) -> Boolean): Stats =
        run(message, true, maxTokens, strategy, temperature, seed, onPiece)

    /** Stop the running generation (it then throws EdgespecException with STATUS_CANCELLED). */
    fun cancel() = Native.cancel(handle)

    fun reset() = Native.check(Native.reset(handle))

    override fun close() { Native.sessionFree(handle); handle = 0 }

    private fun run(text: String, chat: Boolean, maxTokens: Int, strategy: String, temperature: Float, seed: Long,
                    onPiece: (String) -> Boolean): Stats {
        val id = Native.strategyId(strategy.toByteArray(Charsets.UTF_8))
        if (id < 0) throw EdgespecException(1, "unknown strategy $strategy")
        val s = DoubleArray(11)
        val sink = PieceSink { onPiece(String(it, Charsets.UTF_8)) }
        Native.check(Native.generate(handle, text.toByteArray(Charsets.UTF_8), chat, maxTokens, id, temperature,
                                     seed, sink, s))
        return Stats(s[0].toInt(), s[1].toInt(), s[2].toLong(), s[3].toLong(), s[4].toLong(), s[5].toLong(),
                     s[6].toLong(), s[7], s[8], s[9], s[10].takeIf { it >= 0 })
    }
}
