// Drives the JNI glue on the host: a chat turn streamed and stopped by the sink, then an unsupported strategy.
import dev.edgespec.*;
import java.nio.charset.StandardCharsets;
public class Smoke {
    public static void main(String[] a) {
        long[] out = new long[1];
        int st = Native.modelLoad(a[0].getBytes(StandardCharsets.UTF_8), 2, 512, 0, out);
        if (st != 0) throw new RuntimeException(Native.lastError());
        long m = out[0];
        st = Native.sessionCreate(m, out);
        long s = out[0];
        double[] stats = new double[11];
        StringBuilder sb = new StringBuilder();
        int[] n = {0};
        st = Native.generate(s, "Write a haiku about the sea 🌊.".getBytes(StandardCharsets.UTF_8), true, 40,
            Native.strategyId("plain".getBytes(StandardCharsets.UTF_8)), 0f, 1, utf8 -> {
                sb.append(new String(utf8, StandardCharsets.UTF_8)); return ++n[0] < 20; }, stats);
        System.out.println("status " + st + " pieces " + n[0] + ": " + sb);
        System.out.println("generated " + stats[3] + " stop " + stats[1] + " tok/s " + stats[8] + " energy " + stats[10]);
        st = Native.generate(s, "x".getBytes(StandardCharsets.UTF_8), false, 5, 4, 0f, 1, u -> true, stats);
        System.out.println("lookahead status " + st + ": " + Native.lastError());
        Native.sessionFree(s); Native.modelFree(m);
    }
}
