// Test server for perfsleuth's JVM GC probe (tests/functional/test_probes_gc_jvm.py).
//
// A JDK-only HTTP server: every GET allocates short-lived garbage and keeps a slice of it
// in a bounded ring, so young collections happen under load and some objects get promoted
// (which is what makes G1 run real stop-the-world pauses at -Xmx64m). It listens on
// 127.0.0.1, on the port given as the first argument (0 = any free port), and prints
// "PORT <n>" on stdout once it accepts connections.

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.Executors;

public final class GcServer {
    // Retained across requests so that part of each request's garbage survives a young GC.
    private static final int RING_SLOTS = 256;
    private static final byte[][] RING = new byte[RING_SLOTS][];
    private static int ringNext;

    private GcServer() {}

    public static void main(String[] args) throws IOException {
        // Without TCP_NODELAY the separate header and body writes meet the client's
        // delayed ACK and every keep-alive request takes 40 ms.
        System.setProperty("sun.net.httpserver.nodelay", "true");
        int port = args.length > 0 ? Integer.parseInt(args[0]) : 0;
        InetSocketAddress addr = new InetSocketAddress(InetAddress.getLoopbackAddress(), port);
        HttpServer server = HttpServer.create(addr, 64);
        server.createContext("/", GcServer::handle);
        server.setExecutor(Executors.newFixedThreadPool(4));
        server.start();
        System.out.println("PORT " + server.getAddress().getPort());
        System.out.flush();
    }

    private static void handle(HttpExchange exchange) throws IOException {
        long checksum = 0;
        // About 4 MiB of garbage per request in 4 KiB chunks.
        for (int i = 0; i < 1024; i++) {
            byte[] chunk = new byte[4096];
            chunk[i % chunk.length] = (byte) i;
            checksum += chunk[i % chunk.length];
            if (i % 64 == 0) {
                keep(chunk);
            }
        }
        byte[] body = ("ok " + checksum + "\n").getBytes(StandardCharsets.US_ASCII);
        exchange.sendResponseHeaders(200, body.length);
        try (OutputStream out = exchange.getResponseBody()) {
            out.write(body);
        }
    }

    private static synchronized void keep(byte[] chunk) {
        RING[ringNext] = chunk;
        ringNext = (ringNext + 1) % RING_SLOTS;
    }
}
