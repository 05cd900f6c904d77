using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Cdc.Consumer;
using Cdc.Outbox.V1;
using Cdc.Tests.Fixtures;
using Confluent.Kafka;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using Npgsql;
using Xunit.Abstractions;

namespace Cdc.Tests.Ends;

/// <summary>The receiving side: the deserializer, the inbox, and the hosted consumer on a Kafka-protocol broker and PostgreSQL.</summary>
public class OutboxConsumerTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>, IDisposable
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    readonly ILoggerFactory _loggers = LoggerFactory.Create(b => b.AddProvider(new TestLoggerProvider(output)).SetMinimumLevel(LogLevel.Information));

    [Fact]
    public void The_deserializer_reads_the_connectors_OutboxEvent_and_refuses_anything_else()
    {
        var evt = OutboxTopics.Event("order", "o-1", "OrderPlaced", """{"orderId":7,"total":12.5}""");
        evt.Headers["tenant"] = "acme";
        evt.Source = new Source { CommitLsn = 42, TransactionId = 7 };
        var context = new SerializationContext(MessageComponentType.Value, "shop.order");

        var read = OutboxEventDeserializer.Instance.Deserialize(evt.ToByteArray(), isNull: false, context);
        Assert.Equal(evt, read);
        Assert.True(read.HasJsonPayload());
        Assert.Equal(12.5m, read.PayloadAs<OrderPlaced>().Total);
        using (var json = read.PayloadAsJsonDocument())
            Assert.Equal(7, json.RootElement.GetProperty("orderId").GetInt32());

        var bytes = new OutboxEvent(evt) { Payload = ByteString.CopyFrom(1, 2, 3), PayloadContentType = "application/x-protobuf" };
        Assert.Equal(new byte[] { 1, 2, 3 }, bytes.PayloadBytes().ToArray());
        Assert.Contains("not JSON", Assert.Throws<InvalidOperationException>(() => bytes.PayloadAs<OrderPlaced>()).Message);

        Assert.Throws<InvalidDataException>(() => OutboxEventDeserializer.Instance.Deserialize([], isNull: true, context));
        Assert.Throws<InvalidDataException>(() => OutboxEventDeserializer.Instance.Deserialize("hello, world"u8, isNull: false, context));
        Assert.Throws<InvalidDataException>(() => OutboxEventDeserializer.Instance.Deserialize(new OutboxEvent { EventType = "x" }.ToByteArray(), false, context));

        var headers = new Headers { { "id", "from-header"u8.ToArray() } };
        Assert.Equal("from-header", headers.EventId());
        Assert.Null(new Headers().EventId());
    }

    [Fact]
    public async Task The_inbox_runs_the_handler_once_per_event_id_and_a_failing_handler_leaves_no_entry()
    {
        var servers = await fixture.GetAsync();
        var db = await ConsumerDatabase.CreateAsync(servers);
        await using var dataSource = NpgsqlDataSource.Create(servers.PostgresConnectionString);
        var processor = new InboxProcessor(dataSource, new Inbox("billing", db.InboxTable));
        var other = new InboxProcessor(dataSource, new Inbox("shipping", db.InboxTable));
        var runs = 0;
        Task Handler(NpgsqlTransaction tx, CancellationToken ct)
        {
            runs++;
            return db.RecordAsync(tx, "e-1", ct);
        }

        Assert.Equal(InboxOutcome.Processed, await processor.ProcessAsync("e-1", Handler));
        Assert.Equal(InboxOutcome.Duplicate, await processor.ProcessAsync("e-1", Handler)); // redelivered
        Assert.Equal(InboxOutcome.Processed, await other.ProcessAsync("e-1", Handler)); // another consumer has its own inbox
        Assert.Equal(2, runs);

        await Assert.ThrowsAsync<InvalidOperationException>(() => processor.ProcessAsync("e-2", async (tx, ct) =>
        {
            await db.RecordAsync(tx, "e-2", ct);
            throw new InvalidOperationException("the handler failed after writing");
        }));
        // Rolled back whole: no business row, no inbox entry, so the event can be tried again.
        Assert.Equal(InboxOutcome.Processed, await processor.ProcessAsync("e-2", (tx, ct) => db.RecordAsync(tx, "e-2", ct)));
        Assert.Equal(new Dictionary<string, long> { ["e-1"] = 2, ["e-2"] = 1 }, await db.BusinessRowsAsync());
    }

    [Fact]
    public async Task Inbox_cleanup_deletes_only_the_consumers_entries_older_than_the_retention()
    {
        var servers = await fixture.GetAsync();
        var db = await ConsumerDatabase.CreateAsync(servers);
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"""
            INSERT INTO {db.InboxTable} (consumer, event_id, processed_at)
            SELECT 'billing', 'old-' || i, now() - interval '10 days' FROM generate_series(1, 25000) i;
            INSERT INTO {db.InboxTable} (consumer, event_id, processed_at) VALUES ('billing', 'new', now()), ('shipping', 'old', now() - interval '10 days');
            """);
        await using var dataSource = NpgsqlDataSource.Create(servers.PostgresConnectionString);

        var deleted = await new Inbox("billing", db.InboxTable).PurgeAsync(dataSource, TimeSpan.FromDays(7));

        Assert.Equal(25_000, deleted); // in three batches
        Assert.Equal(2L, await Sql.ScalarAsync<long>(servers.PostgresConnectionString, $"SELECT count(*) FROM {db.InboxTable}"));
    }

    [Fact]
    public async Task Inbox_cleanup_on_a_partitioned_inbox_deletes_the_old_entries_of_every_partition_and_keeps_the_recent_ones()
    {
        // One old and one recent entry in each partition, written in the same order: their ctids are the same in every
        // partition, so a delete by ctid would take the recent entries too (and a redelivery would be processed again).
        var servers = await fixture.GetAsync();
        var table = $"public.{TestNames.Unique("pinbox")}";
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"""
            CREATE TABLE {table} (consumer text NOT NULL, event_id text NOT NULL, processed_at timestamptz NOT NULL DEFAULT now(),
              PRIMARY KEY (consumer, event_id, processed_at)) PARTITION BY RANGE (processed_at);
            CREATE TABLE {table}_old PARTITION OF {table} FOR VALUES FROM ('2000-01-01') TO ('2020-01-01');
            CREATE TABLE {table}_mid PARTITION OF {table} FOR VALUES FROM ('2020-01-01') TO ('2025-01-01');
            CREATE TABLE {table}_new PARTITION OF {table} DEFAULT;
            INSERT INTO {table} VALUES ('billing', 'a-old', '2010-01-01'), ('billing', 'b-mid', '2021-01-01'), ('billing', 'c-new', now());
            INSERT INTO {table} VALUES ('billing', 'a-old2', '2011-01-01'), ('billing', 'b-mid2', '2022-01-01'), ('billing', 'c-new2', now());
            """);
        await using var dataSource = NpgsqlDataSource.Create(servers.PostgresConnectionString);

        var deleted = await new Inbox("billing", table).PurgeAsync(dataSource, TimeSpan.FromDays(7));

        Assert.Equal(4, deleted);
        Assert.Equal("c-new,c-new2", await Sql.ScalarAsync<string>(servers.PostgresConnectionString,
            $"SELECT string_agg(event_id, ',' ORDER BY event_id) FROM {table}"));
    }

    [Fact]
    public async Task A_crash_between_the_database_commit_and_the_offset_commit_redelivers_and_the_redelivery_changes_nothing()
    {
        var servers = await fixture.GetAsync();
        var db = await ConsumerDatabase.CreateAsync(servers);
        var topic = $"{db.Name}.order";
        await servers.CreateTopicAsync(topic, partitions: 2);
        var events = Enumerable.Range(0, 20).Select(i => OutboxTopics.Event("order", $"o-{i % 5}", "OrderPlaced")).ToList();
        await OutboxTopics.ProduceAsync(servers.KafkaBootstrapServers, topic, events);
        await using var dataSource = NpgsqlDataSource.Create(servers.PostgresConnectionString);
        var runs = new ConcurrentDictionary<string, int>();
        Task Handler(OutboxEvent evt, NpgsqlTransaction tx, CancellationToken ct)
        {
            runs.AddOrUpdate(evt.Id, 1, (_, n) => n + 1);
            return db.RecordAsync(tx, evt.Id, ct);
        }
        // Offsets would be committed only every hour: everything processed is still uncommitted at the crash.
        var options = db.ConsumerOptions(servers, topic, o => o.CommitInterval = TimeSpan.FromHours(1));

        var first = new OutboxConsumerService(options, dataSource, Handler, _loggers.CreateLogger<OutboxConsumerService>());
        await first.StartAsync(CancellationToken.None);
        await OutboxTopics.WaitUntilAsync(() => first.Status.Processed == 20, Timeout, "the first instance processed all 20 events");
        await first.AbandonAsync(); // the crash: database committed, Kafka offsets not
        Assert.Equal(0, first.Status.OffsetCommits);
        Assert.All(OutboxTopics.CommittedOffsets(servers.KafkaBootstrapServers, options.GroupId, topic, 2).Values, o => Assert.Equal(Offset.Unset.Value, o));

        var watch = Stopwatch.StartNew();
        var second = new OutboxConsumerService(options, dataSource, Handler, _loggers.CreateLogger<OutboxConsumerService>());
        await second.StartAsync(CancellationToken.None);
        await OutboxTopics.WaitUntilAsync(() => second.Status.Duplicates == 20, Timeout, "the second instance got all 20 again");
        output.WriteLine($"redelivered after {watch.ElapsedMilliseconds} ms");
        await second.StopAsync(CancellationToken.None); // a clean stop commits

        Assert.Equal(0, second.Status.Processed);
        Assert.All(events, e => Assert.Equal(1, runs[e.Id]));
        Assert.Equal(events.ToDictionary(e => e.Id, _ => 1L), await db.BusinessRowsAsync());
        var committed = OutboxTopics.CommittedOffsets(servers.KafkaBootstrapServers, options.GroupId, topic, 2);
        Assert.Equal(20L, committed.Values.Sum());
    }

    [Fact]
    public async Task A_handler_that_keeps_failing_is_retried_with_backoff_then_dead_lettered_and_the_partition_moves_on()
    {
        var servers = await fixture.GetAsync();
        var db = await ConsumerDatabase.CreateAsync(servers);
        var topic = $"{db.Name}.order";
        await servers.CreateTopicAsync(topic, partitions: 1);
        var options = db.ConsumerOptions(servers, topic, o =>
        {
            o.MaxAttempts = 3;
            o.InitialBackoff = TimeSpan.FromMilliseconds(100);
        });
        await servers.CreateTopicAsync(options.DeadLetterTopic, partitions: 1);
        var poisoned = OutboxTopics.Event("order", "o-1", "OrderPlaced", """{"poison":true}""");
        var fine = OutboxTopics.Event("order", "o-1", "OrderShipped");
        await OutboxTopics.ProduceAsync(servers.KafkaBootstrapServers, topic, [poisoned]);
        await OutboxTopics.ProduceRawAsync(servers.KafkaBootstrapServers, topic, "o-1"u8.ToArray(), "this is not an OutboxEvent"u8.ToArray());
        await OutboxTopics.ProduceAsync(servers.KafkaBootstrapServers, topic, [fine]);

        await using var dataSource = NpgsqlDataSource.Create(servers.PostgresConnectionString);
        var attempts = new ConcurrentQueue<(string Id, DateTime At)>();
        async Task Handler(OutboxEvent evt, NpgsqlTransaction tx, CancellationToken ct)
        {
            attempts.Enqueue((evt.Id, DateTime.UtcNow));
            await db.RecordAsync(tx, evt.Id, ct);
            if (evt.PayloadAsJsonDocument().RootElement.TryGetProperty("poison", out _))
                throw new InvalidOperationException("cannot ship a poisoned order");
        }

        var service = new OutboxConsumerService(options, dataSource, Handler, _loggers.CreateLogger<OutboxConsumerService>());
        await service.StartAsync(CancellationToken.None);
        await OutboxTopics.WaitUntilAsync(() => service.Status.Processed == 1, Timeout, "the event after the failing one is processed");
        await service.StopAsync(CancellationToken.None);

        var tries = attempts.Where(a => a.Id == poisoned.Id).Select(a => a.At).ToList();
        Assert.Equal(3, tries.Count);
        Assert.True(tries[1] - tries[0] >= TimeSpan.FromMilliseconds(90), $"first backoff {tries[1] - tries[0]}");
        Assert.True(tries[2] - tries[1] >= TimeSpan.FromMilliseconds(190), $"second backoff {tries[2] - tries[1]}"); // doubled
        Assert.Equal(2, service.Status.DeadLettered);
        Assert.Equal(3, service.Status.HandlerFailures);
        // The failed attempts rolled back: only the event that succeeded left a row.
        Assert.Equal(new Dictionary<string, long> { [fine.Id] = 1 }, await db.BusinessRowsAsync());

        var dead = KafkaReader.ReadAll(servers.KafkaBootstrapServers, options.DeadLetterTopic);
        Assert.Equal(2, dead.Count);
        var failed = dead[0];
        Assert.Equal(poisoned.Id, Encoding.UTF8.GetString(failed.Message.Key));
        Assert.Equal(poisoned.Id, Header(failed, "id"));
        Assert.Equal("InvalidOperationException: cannot ship a poisoned order", Header(failed, "error"));
        Assert.Equal("3", Header(failed, "attempts"));
        Assert.Equal(topic, Header(failed, "original_topic"));
        Assert.Equal("0", Header(failed, "original_offset"));
        Assert.Equal("OrderPlaced", Header(failed, "event_type")); // the original headers travel along
        Assert.Equal(poisoned, OutboxEvent.Parser.ParseFrom(failed.Message.Value));
        var unreadable = dead[1];
        Assert.Contains("not a cdc.outbox.v1.OutboxEvent", Header(unreadable, "error"));
        Assert.Equal("this is not an OutboxEvent", Encoding.UTF8.GetString(unreadable.Message.Value));
        Assert.Equal("1", Header(unreadable, "original_offset"));

        // Everything was committed past: a restart would not see them again.
        Assert.Equal(3L, OutboxTopics.CommittedOffsets(servers.KafkaBootstrapServers, options.GroupId, topic, 1)[0]);
    }

    [Fact]
    public void Options_are_validated_when_the_service_is_created()
    {
        static string Problem(Action<OutboxConsumerOptions> change)
        {
            var options = new OutboxConsumerOptions { BootstrapServers = "localhost:9092", GroupId = "billing", Topics = ["shop.order"], DeadLetterTopic = "billing.dlq" };
            change(options);
            using var dataSource = NpgsqlDataSource.Create("Host=localhost");
            return Assert.Throws<OutboxConsumerConfigurationException>(() =>
                new OutboxConsumerService(options, dataSource, (_, _, _) => Task.CompletedTask,
                    Microsoft.Extensions.Logging.Abstractions.NullLogger<OutboxConsumerService>.Instance)).Message;
        }

        Assert.StartsWith("OutboxConsumerOptions.GroupId:", Problem(o => o.GroupId = ""));
        Assert.StartsWith("OutboxConsumerOptions.Topics:", Problem(o => o.Topics = []));
        Assert.StartsWith("OutboxConsumerOptions.Topics:", Problem(o => o.Topics = ["no spaces please"]));
        Assert.StartsWith("OutboxConsumerOptions.DeadLetterTopic:", Problem(o => o.DeadLetterTopic = ""));
        Assert.StartsWith("OutboxConsumerOptions.DeadLetterTopic:", Problem(o => o.DeadLetterTopic = "shop.order"));
        Assert.StartsWith("OutboxConsumerOptions.InboxTable:", Problem(o => o.InboxTable = "a.b.c"));
        Assert.StartsWith("OutboxConsumerOptions.MaxAttempts:", Problem(o => o.MaxAttempts = 0));
        Assert.StartsWith("OutboxConsumerOptions.MaxBackoff:", Problem(o => o.MaxBackoff = TimeSpan.FromMilliseconds(1)));
        Assert.StartsWith("OutboxConsumerOptions.Consumer[enable.auto.commit]:", Problem(o => o.Consumer["enable.auto.commit"] = "true"));
        // Retries that would outlast max.poll.interval.ms get the consumer evicted mid-event.
        Assert.Contains("max.poll.interval.ms", Problem(o => o.MaxAttempts = 30));

        Assert.Equal(TimeSpan.FromMilliseconds(200 + 400 + 800 + 1600), new OutboxConsumerOptions().RetryBudget);
        Assert.Equal(TimeSpan.FromSeconds(30), RetryBackoff.Delay(20, TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(30)));
    }

    static string Header(ConsumeResult<byte[], byte[]> record, string name) => Encoding.UTF8.GetString(record.Message.Headers.GetLastBytes(name));

    sealed record OrderPlaced(int OrderId, decimal Total);

    public void Dispose() => _loggers.Dispose();

    /// <summary>A consumer's side of the database: an inbox and a business table without a unique key, so a second application would show.</summary>
    sealed class ConsumerDatabase
    {
        public required string Name { get; init; }
        public required string ConnectionString { get; init; }
        public string InboxTable => $"public.{Name}_inbox";
        public string BusinessTable => $"public.{Name}_applied";

        public static async Task<ConsumerDatabase> CreateAsync(TestServers servers)
        {
            var db = new ConsumerDatabase { Name = TestNames.Unique("c"), ConnectionString = servers.PostgresConnectionString };
            await Sql.ExecuteAsync(servers.PostgresConnectionString,
                Inbox.CreateTableSql(db.InboxTable) + $"CREATE TABLE {db.BusinessTable} (event_id text NOT NULL);");
            return db;
        }

        public OutboxConsumerOptions ConsumerOptions(TestServers servers, string topic, Action<OutboxConsumerOptions>? configure = null)
        {
            var options = new OutboxConsumerOptions
            {
                BootstrapServers = servers.KafkaBootstrapServers,
                GroupId = $"{Name}-group",
                Topics = [topic],
                DeadLetterTopic = $"{Name}.consumer-dlq",
                InboxTable = InboxTable,
                // Shorter than the default 45 s, so a crashed member's partitions move on within the test.
                Consumer = { ["session.timeout.ms"] = "6000", ["heartbeat.interval.ms"] = "500" },
            };
            configure?.Invoke(options);
            return options;
        }

        public async Task RecordAsync(NpgsqlTransaction tx, string eventId, CancellationToken ct)
        {
            await using var insert = new NpgsqlCommand($"INSERT INTO {BusinessTable} (event_id) VALUES ($1)", tx.Connection, tx);
            insert.Parameters.AddWithValue(eventId);
            await insert.ExecuteNonQueryAsync(ct);
        }

        public async Task<Dictionary<string, long>> BusinessRowsAsync()
        {
            await using var connection = new NpgsqlConnection(ConnectionString);
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand($"SELECT event_id, count(*) FROM {BusinessTable} GROUP BY event_id", connection);
            await using var reader = await command.ExecuteReaderAsync();
            var rows = new Dictionary<string, long>();
            while (await reader.ReadAsync())
                rows[reader.GetString(0)] = reader.GetInt64(1);
            return rows;
        }
    }
}
