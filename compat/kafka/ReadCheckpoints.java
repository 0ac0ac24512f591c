// Reads checkpoint files with Apache Kafka's own readers (kafka-storage),
// for the tests in this directory: DumpLogSegments does not handle them.
// Run by the java source launcher: java -cp <Kafka's jars> ReadCheckpoints.java FILE...
//
// Prints one line per entry, "FILE epoch E start S" for a
// leader-epoch-checkpoint and "FILE topic-partition OFFSET" for the log-dir
// offset checkpoints; a file Kafka refuses makes it exit 1 with the error.

import java.io.File;
import java.util.Map;
import java.util.TreeMap;

import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.storage.internals.checkpoint.LeaderEpochCheckpointFile;
import org.apache.kafka.storage.internals.checkpoint.OffsetCheckpointFile;
import org.apache.kafka.storage.internals.log.EpochEntry;
import org.apache.kafka.storage.internals.log.LogDirFailureChannel;

public class ReadCheckpoints {
    public static void main(String[] args) throws Exception {
        LogDirFailureChannel failures = new LogDirFailureChannel(1);
        for (String path : args) {
            File file = new File(path);
            if (file.getName().equals("leader-epoch-checkpoint")) {
                for (EpochEntry e : new LeaderEpochCheckpointFile(file, failures).read()) {
                    System.out.println(path + " epoch " + e.epoch() + " start " + e.startOffset());
                }
            } else {
                Map<String, Long> sorted = new TreeMap<>();
                for (Map.Entry<TopicPartition, Long> e : new OffsetCheckpointFile(file, failures).read().entrySet()) {
                    sorted.put(e.getKey().toString(), e.getValue());
                }
                sorted.forEach((tp, offset) -> System.out.println(path + " " + tp + " " + offset));
            }
        }
    }
}
