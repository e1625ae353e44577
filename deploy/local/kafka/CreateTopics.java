// Creates Kafka topics in one JVM (one TopicCommand per topic costs a JVM start each).
// Run by deploy/local/stack with Java's source launcher, which needs a JDK:
//   java -cp '<libs>/*' CreateTopics.java BOOTSTRAP NAME PARTITIONS CONFIGS [NAME PARTITIONS CONFIGS]...
// CONFIGS is '-' or key=value,key=value (as in schemas/kafka-topics.conf). Replication factor 1.
// A topic that already exists is not an error; its settings are left as they are.

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.errors.TopicExistsException;

public class CreateTopics {
    public static void main(String[] args) throws Exception {
        if (args.length < 4 || (args.length - 1) % 3 != 0) {
            System.err.println("usage: CreateTopics BOOTSTRAP NAME PARTITIONS CONFIGS [...]");
            System.exit(2);
        }
        List<NewTopic> topics = new ArrayList<>();
        for (int i = 1; i < args.length; i += 3) {
            Map<String, String> configs = new HashMap<>();
            if (!args[i + 2].equals("-")) {
                for (String kv : args[i + 2].split(",")) {
                    String[] parts = kv.split("=", 2);
                    if (parts.length != 2) throw new IllegalArgumentException("bad config '" + kv + "' for " + args[i]);
                    configs.put(parts[0], parts[1]);
                }
            }
            topics.add(new NewTopic(args[i], Integer.parseInt(args[i + 1]), (short) 1).configs(configs));
        }
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "60000");
        int failed = 0;
        try (Admin admin = Admin.create(props)) {
            var results = admin.createTopics(topics).values();
            for (var entry : results.entrySet()) {
                try {
                    entry.getValue().get();
                } catch (ExecutionException e) {
                    if (e.getCause() instanceof TopicExistsException) continue;
                    System.err.println("creating " + entry.getKey() + " failed: " + e.getCause());
                    failed++;
                }
            }
        }
        System.exit(failed == 0 ? 0 : 1);
    }
}
