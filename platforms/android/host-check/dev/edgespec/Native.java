// Java stand-in for the Kotlin `Native` object (same class name, same JNI symbols) used by check.sh.
package dev.edgespec;
public final class Native {
    static { System.loadLibrary("edgespec_jni"); }
    public static native String lastError();
    public static native int strategyId(byte[] name);
    public static native int modelLoad(byte[] path, int threads, int ctx, long budget, long[] out);
    public static native void modelFree(long model);
    public static native int sessionCreate(long model, long[] out);
    public static native void sessionFree(long session);
    public static native void cancel(long session);
    public static native int reset(long session);
    public static native int generate(long session, byte[] prompt, boolean chat, int maxTokens, int strategy,
        float temperature, long seed, PieceSink sink, double[] stats);
}
