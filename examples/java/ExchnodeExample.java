// A department system talking to its exchnode node, with nothing but the JDK (17+).
//
// The node's local API is plain HTTP on loopback with a bearer token (the operator's:
// the file operator.token next to node.toml). Its OpenAPI document is served at
// GET /v1/openapi.json (or `exchnode node openapi > openapi.json`); generate a client
// from it if you prefer. This example keeps to java.net.http and a tiny JSON reader so
// that it compiles alone:
//
//   javac -d out ExchnodeExample.java
//   java -cp out ExchnodeExample send    --url http://127.0.0.1:7480 --token-file operator.token \
//        --to 520102 --text "hello" [--content-type text/plain] [--key ORDER-42]
//   java -cp out ExchnodeExample receive --url ... --token-file ... [--wait 30] [--max 10]
//   java -cp out ExchnodeExample publish --url ... --token-file ... --operator 张三 --code 101001/000001
//   java -cp out ExchnodeExample status  --url ... --token-file ... --message-id HEX [--wait 10]
//
// Receiving is at-least-once: the node leases what it hands out and offers it again unless
// it is acknowledged; so store what you received first, then acknowledge it (POST /v1/ack).
// Errors are always {"error": "...", "code": "..."} with a 4xx/5xx status.

import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

public final class ExchnodeExample {

    /** An answer the node refused: its HTTP status and the API's error code. */
    static final class NodeError extends Exception {
        private static final long serialVersionUID = 1L;
        final int status;
        final String code;

        NodeError(int status, String code, String message) {
            super(message + " [" + code + ", HTTP " + status + "]");
            this.status = status;
            this.code = code;
        }
    }

    /** The operator API of one node. */
    static final class Client {
        private final HttpClient http = HttpClient.newBuilder()
                .connectTimeout(Duration.ofSeconds(5)).build();
        private final String base;
        private final String token;

        Client(String base, String token) {
            this.base = base.endsWith("/") ? base.substring(0, base.length() - 1) : base;
            this.token = token;
        }

        /**
         * POST /v1/send: the node holds the message durably when this returns. With receipt,
         * each recipient's node signs a receipt that status() then shows.
         */
        Map<String, Object> send(List<String> to, byte[] payload, String contentType,
                boolean receipt, String idempotencyKey)
                throws IOException, InterruptedException, NodeError {
            StringBuilder query = new StringBuilder("?content_type=").append(encode(contentType))
                    .append("&receipt=").append(receipt ? 1 : 0);
            for (String name : to) {
                query.append("&to=").append(encode(name));
            }
            HttpRequest.Builder request = request("/v1/send" + query)
                    .header("Content-Type", "application/octet-stream")
                    .POST(HttpRequest.BodyPublishers.ofByteArray(payload));
            if (idempotencyKey != null) { // a retry with the same key sends nothing new
                request.header("Idempotency-Key", idempotencyKey);
            }
            return object(call(request.build()));
        }

        /** GET /v1/receive: lease up to max deliveries, waiting up to wait seconds. */
        List<Object> receive(int max, double wait) throws IOException, InterruptedException, NodeError {
            String query = "?max=" + max + "&wait=" + wait;
            Map<String, Object> answer = object(call(request("/v1/receive" + query).GET().build()));
            return list(answer.get("deliveries"));
        }

        /** POST /v1/ack: the deliveries are stored on our side; the node may forget them. */
        Map<String, Object> ack(List<String> ids) throws IOException, InterruptedException, NodeError {
            StringBuilder body = new StringBuilder("{\"ids\": [");
            for (int i = 0; i < ids.size(); i++) {
                body.append(i == 0 ? "" : ", ").append(Json.quote(ids.get(i)));
            }
            return postJson("/v1/ack", body.append("]}").toString());
        }

        /** GET /v1/status/{id}: receipts and reports of a message this node sent. */
        Map<String, Object> status(String messageId, double wait)
                throws IOException, InterruptedException, NodeError {
            String path = "/v1/status/" + encode(messageId) + "?wait=" + wait;
            return object(call(request(path).GET().build()));
        }

        /** POST /v1/catalog/publish: one entry of this node's resource catalog. */
        Map<String, Object> publish(String operator, String entryJson)
                throws IOException, InterruptedException, NodeError {
            String body = "{\"operator\": " + Json.quote(operator) + ", \"entry\": " + entryJson + "}";
            return postJson("/v1/catalog/publish", body);
        }

        private Map<String, Object> postJson(String path, String json)
                throws IOException, InterruptedException, NodeError {
            HttpRequest request = request(path)
                    .header("Content-Type", "application/json")
                    .POST(HttpRequest.BodyPublishers.ofString(json, StandardCharsets.UTF_8))
                    .build();
            return object(call(request));
        }

        private HttpRequest.Builder request(String path) {
            return HttpRequest.newBuilder(URI.create(base + path))
                    .timeout(Duration.ofSeconds(330)) // a long poll waits up to 300 s
                    .header("Authorization", "Bearer " + token)
                    .header("Accept", "application/json");
        }

        private Object call(HttpRequest request) throws IOException, InterruptedException, NodeError {
            HttpResponse<String> response = http.send(
                    request, HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
            Object body = response.body().isEmpty() ? null : Json.parse(response.body());
            if (response.statusCode() >= 400) {
                Map<String, Object> error = body instanceof Map ? object(body) : Map.of();
                throw new NodeError(response.statusCode(), String.valueOf(error.get("code")),
                        String.valueOf(error.get("error")));
            }
            return body;
        }

        private static String encode(String text) {
            return URLEncoder.encode(text, StandardCharsets.UTF_8);
        }
    }

    /** A small JSON reader (objects, arrays, texts, numbers, true/false/null) and quoting. */
    static final class Json {
        private final String text;
        private int at;

        private Json(String text) {
            this.text = text;
        }

        static Object parse(String text) {
            Json json = new Json(text);
            Object value = json.value();
            json.space();
            if (json.at != text.length()) {
                throw new IllegalArgumentException("trailing data at " + json.at);
            }
            return value;
        }

        /** A JSON string literal for any Java string (RFC 8259 §7). */
        static String quote(String value) {
            StringBuilder out = new StringBuilder("\"");
            for (int i = 0; i < value.length(); i++) {
                char c = value.charAt(i);
                switch (c) {
                    case '"' -> out.append("\\\"");
                    case '\\' -> out.append("\\\\");
                    case '\n' -> out.append("\\n");
                    case '\r' -> out.append("\\r");
                    case '\t' -> out.append("\\t");
                    default -> {
                        if (c < 0x20) {
                            out.append(String.format("\\u%04x", (int) c));
                        } else {
                            out.append(c);
                        }
                    }
                }
            }
            return out.append('"').toString();
        }

        private Object value() {
            space();
            if (at >= text.length()) {
                throw new IllegalArgumentException("unexpected end of JSON");
            }
            char c = text.charAt(at);
            if (c == '{') {
                return object();
            }
            if (c == '[') {
                return array();
            }
            if (c == '"') {
                return string();
            }
            if (text.startsWith("true", at)) {
                at += 4;
                return Boolean.TRUE;
            }
            if (text.startsWith("false", at)) {
                at += 5;
                return Boolean.FALSE;
            }
            if (text.startsWith("null", at)) {
                at += 4;
                return null;
            }
            return number();
        }

        private Map<String, Object> object() {
            Map<String, Object> out = new LinkedHashMap<>();
            at++; // {
            space();
            if (text.charAt(at) == '}') {
                at++;
                return out;
            }
            while (true) {
                space();
                String key = string();
                space();
                expect(':');
                out.put(key, value());
                space();
                if (text.charAt(at) == ',') {
                    at++;
                    continue;
                }
                expect('}');
                return out;
            }
        }

        private List<Object> array() {
            List<Object> out = new ArrayList<>();
            at++; // [
            space();
            if (text.charAt(at) == ']') {
                at++;
                return out;
            }
            while (true) {
                out.add(value());
                space();
                if (text.charAt(at) == ',') {
                    at++;
                    continue;
                }
                expect(']');
                return out;
            }
        }

        private String string() {
            expect('"');
            StringBuilder out = new StringBuilder();
            while (true) {
                char c = text.charAt(at++);
                if (c == '"') {
                    return out.toString();
                }
                if (c != '\\') {
                    out.append(c);
                    continue;
                }
                char escaped = text.charAt(at++);
                switch (escaped) {
                    case 'n' -> out.append('\n');
                    case 'r' -> out.append('\r');
                    case 't' -> out.append('\t');
                    case 'b' -> out.append('\b');
                    case 'f' -> out.append('\f');
                    case 'u' -> {
                        out.append((char) Integer.parseInt(text.substring(at, at + 4), 16));
                        at += 4;
                    }
                    default -> out.append(escaped); // " \ /
                }
            }
        }

        private Object number() {
            int start = at;
            while (at < text.length() && "+-0123456789.eE".indexOf(text.charAt(at)) >= 0) {
                at++;
            }
            String literal = text.substring(start, at);
            if (literal.isEmpty()) {
                throw new IllegalArgumentException("not JSON at " + start);
            }
            if (literal.contains(".") || literal.contains("e") || literal.contains("E")) {
                return Double.parseDouble(literal);
            }
            return Long.parseLong(literal);
        }

        private void expect(char c) {
            if (at >= text.length() || text.charAt(at) != c) {
                throw new IllegalArgumentException("expected '" + c + "' at " + at);
            }
            at++;
        }

        private void space() {
            while (at < text.length() && " \t\r\n".indexOf(text.charAt(at)) >= 0) {
                at++;
            }
        }
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> object(Object value) {
        return (Map<String, Object>) value;
    }

    @SuppressWarnings("unchecked")
    static List<Object> list(Object value) {
        return (List<Object>) value;
    }

    /** A catalog entry as the API takes it (node/README.md §6): every string quoted. */
    static String catalogEntry(String code, String name, String providerCode, String summary) {
        return "{"
                + "\"code\": " + Json.quote(code) + ", "
                + "\"name\": " + Json.quote(name) + ", "
                + "\"provider_code\": " + Json.quote(providerCode) + ", "
                + "\"summary\": " + Json.quote(summary) + ", "
                + "\"format\": \"database\", "
                + "\"data_items\": [{\"name\": \"身份证号\", \"type\": \"C\", \"description\": \"公民身份号码\"},"
                + " {\"name\": \"姓名\", \"type\": \"C\"}], "
                + "\"share_type\": \"conditional\", "
                + "\"share_conditions\": \"仅限政务部门依法履职使用\", "
                + "\"share_methods\": [\"subscription_push\"], "
                + "\"update_cycle\": \"daily\", "
                + "\"publish_date\": \"2026-01-05\""
                + "}";
    }

    public static void main(String[] argv) throws Exception {
        if (argv.length == 0) {
            System.err.println("usage: ExchnodeExample send|receive|publish|status --url URL --token-file FILE ...");
            System.exit(2);
        }
        Map<String, String> options = new HashMap<>();
        List<String> to = new ArrayList<>();
        for (int i = 1; i + 1 < argv.length; i += 2) {
            if (argv[i].equals("--to")) {
                to.add(argv[i + 1]);
            } else {
                options.put(argv[i], argv[i + 1]);
            }
        }
        String token = Files.readString(Path.of(options.get("--token-file"))).strip();
        Client node = new Client(options.getOrDefault("--url", "http://127.0.0.1:7480"), token);
        try {
            switch (argv[0]) {
                case "send" -> {
                    byte[] payload = options.getOrDefault("--text", "").getBytes(StandardCharsets.UTF_8);
                    Map<String, Object> sent = node.send(to, payload,
                            options.getOrDefault("--content-type", "text/plain; charset=utf-8"),
                            true, options.get("--key"));
                    System.out.println("sent " + sent.get("message_id") + " to " + sent.get("recipients"));
                }
                case "receive" -> {
                    List<Object> deliveries = node.receive(
                            Integer.parseInt(options.getOrDefault("--max", "10")),
                            Double.parseDouble(options.getOrDefault("--wait", "30")));
                    List<String> ids = new ArrayList<>();
                    for (Object item : deliveries) {
                        Map<String, Object> delivery = object(item);
                        byte[] payload = Base64.getDecoder().decode((String) delivery.get("payload"));
                        // Store it first (here: print it), then acknowledge it.
                        System.out.println("received " + delivery.get("message_id") + " from "
                                + delivery.get("sender") + " (" + delivery.get("content_type") + "): "
                                + new String(payload, StandardCharsets.UTF_8));
                        ids.add((String) delivery.get("id"));
                    }
                    if (!ids.isEmpty()) {
                        Map<String, Object> acked = node.ack(ids);
                        System.out.println("acknowledged " + acked.get("acked"));
                    } else {
                        System.out.println("nothing waiting");
                    }
                }
                case "publish" -> {
                    String entry = catalogEntry(options.get("--code"),
                            options.getOrDefault("--name", "人口基本信息"),
                            options.getOrDefault("--provider-code", "11520102MB1234567X"),
                            options.getOrDefault("--summary", "户籍人口的基本信息"));
                    Map<String, Object> answer = node.publish(options.get("--operator"), entry);
                    for (Object item : list(answer.get("records"))) {
                        Map<String, Object> record = object(item);
                        System.out.println("published " + record.get("code") + " version "
                                + record.get("version") + " of " + record.get("provider"));
                    }
                }
                case "status" -> {
                    Map<String, Object> status = node.status(options.get("--message-id"),
                            Double.parseDouble(options.getOrDefault("--wait", "0")));
                    System.out.println("settled " + status.get("settled") + ", delivered to "
                            + status.get("delivered_to") + ", failed for " + status.get("failed_for"));
                }
                default -> {
                    System.err.println("unknown command " + argv[0]);
                    System.exit(2);
                }
            }
        } catch (NodeError refused) {
            System.err.println("ExchnodeExample: error: " + refused.getMessage());
            System.exit(1);
        }
    }
}
