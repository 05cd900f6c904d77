using System.Text;
using Cdc.Contracts.SchemaRegistry;
using Cdc.Embedded;
using Cdc.Outbox;
using Cdc.Outbox.V1;
using Cdc.Relay;
using Confluent.Kafka;
using Npgsql;

namespace Cdc.Worker.Demo;

/// <summary>
/// <c>dotnet run --project src/Cdc.Worker -- demo</c>: the connector end to end on throwaway servers (a PostgreSQL
/// from the machine's binaries and librdkafka's Kafka-protocol mock cluster), with a few sample transactions.
/// <c>demo --schema-registry</c> adds an in-process fake Schema Registry and shows the values framed with its ids.
/// </summary>
static class DemoCommand
{
    /// <summary>The contract's outbox table (the writer library's DDL) and the sample's business table.</summary>
    static readonly string Ddl = OutboxSchema.CreateTableSql() + "CREATE TABLE public.orders (id text PRIMARY KEY, total numeric NOT NULL);";

    static readonly string[] Topics = ["outbox.event.order", "outbox.event.customer"];

    public static async Task<int> RunAsync(string[] args)
    {
        var withRegistry = args.Contains("--schema-registry");
        args = [.. args.Where(a => a != "--schema-registry")];
        Console.WriteLine("Cdc demo: a throwaway PostgreSQL and a local Kafka-protocol test broker (librdkafka's mock cluster, not Apache Kafka).");
        await using var postgres = await EmbeddedPostgres.StartAsync();
        using var kafka = MockKafkaCluster.Start(brokers: 3);
        await using var registry = withRegistry ? await FakeSchemaRegistry.StartAsync() : null;
        Console.WriteLine($"  PostgreSQL  {postgres.ConnectionString}");
        Console.WriteLine($"  Kafka       {kafka.BootstrapServers}");
        if (registry is not null)
            Console.WriteLine($"  Registry    {registry.Url}  (an in-process fake of Confluent's Schema Registry REST API, not the real server)");

        await using (var connection = new NpgsqlConnection(postgres.ConnectionString))
        {
            await connection.OpenAsync();
            await using var ddl = new NpgsqlCommand(Ddl, connection);
            await ddl.ExecuteNonQueryAsync();
        }
        foreach (var topic in Topics)
            kafka.CreateTopic(topic, partitions: 3, replicationFactor: 3);
        kafka.CreateTopic("outbox.dlq", partitions: 1, replicationFactor: 3);

        var app = CdcHost.Build(args, new Dictionary<string, string?>
        {
            ["Cdc:Postgres:ConnectionString"] = postgres.ConnectionString,
            ["Cdc:Kafka:BootstrapServers"] = kafka.BootstrapServers,
            ["urls"] = "http://127.0.0.1:0",
            ["Logging:LogLevel:Default"] = "Warning",
            ["Logging:LogLevel:Cdc"] = "Information",
            ["Cdc:Kafka:SchemaRegistry:Url"] = registry?.Url,
        });
        await app.StartAsync();
        // The slot exists once the relay streams; rows committed before that would not be captured.
        var status = app.Services.GetRequiredService<RelayStatus>();
        var streaming = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (!status.Streaming && DateTime.UtcNow < streaming)
            await Task.Delay(50);
        Console.WriteLine("Connector streaming. Writing sample transactions to public.outbox:");

        var expected = await WriteSamplesAsync(postgres.ConnectionString);
        var received = Consume(kafka.BootstrapServers, expected, TimeSpan.FromSeconds(60));
        var confirmed = await WaitForSlotAsync(postgres.ConnectionString, TimeSpan.FromSeconds(30));

        await app.StopAsync();
        await app.DisposeAsync();

        Console.WriteLine();
        Console.WriteLine($"Received {received} of {expected} events; slot cdc_outbox confirmed past the last commit: {(confirmed ? "yes" : "no")}.");
        Console.WriteLine("""

            To run the worker against your own database and brokers:
              export Cdc__Postgres__ConnectionString='Host=db;Database=app;Username=cdc;Password=...'   # role WITH REPLICATION
              export Cdc__Kafka__BootstrapServers='kafka-1:9092,kafka-2:9092'
              dotnet run --project src/Cdc.Worker
            It creates the publication and slot 'cdc_outbox' for public.outbox if missing; see README.md for every setting.
            """);
        return received == expected && confirmed ? 0 : 1;
    }

    /// <summary>Writes the sample transactions; returns how many events they should publish.</summary>
    static async Task<int> WriteSamplesAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();

        async Task Transaction(string title, bool commit, Func<NpgsqlTransaction, Task> body)
        {
            await using var tx = await connection.BeginTransactionAsync();
            await body(tx);
            if (commit)
                await tx.CommitAsync();
            else
                await tx.RollbackAsync();
            Console.WriteLine($"  {(commit ? "committed " : "rolled back")}  {title}");
        }

        async Task<Guid> Insert(NpgsqlTransaction tx, string type, string id, string evt, string payload, string? headers = null)
        {
            var eventId = Guid.NewGuid();
            await using var command = new NpgsqlCommand(
                "INSERT INTO public.outbox (id, aggregate_type, aggregate_id, event_type, payload, headers) VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb)",
                connection, tx);
            command.Parameters.AddWithValue(eventId);
            command.Parameters.AddWithValue(type);
            command.Parameters.AddWithValue(id);
            command.Parameters.AddWithValue(evt);
            command.Parameters.AddWithValue(payload);
            command.Parameters.AddWithValue((object?)headers ?? DBNull.Value);
            await command.ExecuteNonQueryAsync();
            return eventId;
        }

        async Task Execute(NpgsqlTransaction tx, string sql)
        {
            await using var command = new NpgsqlCommand(sql, connection, tx);
            await command.ExecuteNonQueryAsync();
        }

        await Transaction("order o-1 placed with its OrderPlaced event, and customer c-1 registered", true, async tx =>
        {
            await Execute(tx, "INSERT INTO public.orders VALUES ('o-1', 42.50)");
            await Insert(tx, "order", "o-1", "OrderPlaced", """{"orderId":"o-1","total":42.50}""",
                """{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}""");
            await Insert(tx, "customer", "c-1", "CustomerRegistered", """{"customerId":"c-1","name":"Ada"}""");
        });
        await Transaction("order o-2 placed, then rolled back: publishes nothing", false, async tx =>
        {
            await Execute(tx, "INSERT INTO public.orders VALUES ('o-2', 10)");
            await Insert(tx, "order", "o-2", "OrderPlaced", """{"orderId":"o-2","total":10}""");
        });
        await Transaction("order o-1 paid; the outbox row is deleted in the same transaction (still published)", true, async tx =>
        {
            var id = await Insert(tx, "order", "o-1", "OrderPaid", """{"orderId":"o-1","amount":42.50}""");
            await Execute(tx, $"DELETE FROM public.outbox WHERE id = '{id}'");
        });
        await Transaction("an update of an outbox row: publishes nothing", true,
            tx => Execute(tx, "UPDATE public.outbox SET event_type = event_type"));
        return 3;
    }

    static int Consume(string bootstrapServers, int expected, TimeSpan timeout)
    {
        Console.WriteLine();
        Console.WriteLine("Records on Kafka:");
        using var consumer = new ConsumerBuilder<string, byte[]>(new ConsumerConfig
        {
            BootstrapServers = bootstrapServers,
            GroupId = "cdc-demo",
            EnableAutoCommit = false,
        }).Build();
        consumer.Assign(Topics.SelectMany(t => Enumerable.Range(0, 3).Select(p => new TopicPartitionOffset(t, p, Offset.Beginning))));

        var received = 0;
        var deadline = DateTime.UtcNow + timeout;
        while (received < expected && DateTime.UtcNow < deadline)
        {
            var result = consumer.Consume(TimeSpan.FromMilliseconds(200));
            if (result is null)
                continue;
            received++;
            var evt = OutboxEventFraming.Parse(result.Message.Value);
            var headers = string.Join(", ", result.Message.Headers.Select(h => $"{h.Key}={Encoding.UTF8.GetString(h.GetValueBytes())}"));
            Console.WriteLine($"  {result.Topic}[{result.Partition.Value}]@{result.Offset.Value}  key={result.Message.Key}");
            Console.WriteLine($"    headers: {headers}");
            if (OutboxEventFraming.IsFramed(result.Message.Value))
            {
                OutboxEventFraming.Unframe(result.Message.Value, out var schema);
                Console.WriteLine($"    framed: {Convert.ToHexString(result.Message.Value.AsSpan(0, 6))} = magic byte 0, schema id {schema!.Value.Id}, message index [0]");
            }
            Console.WriteLine($"    OutboxEvent: {evt.EventType} {evt.PayloadContentType} {evt.Payload.ToStringUtf8()}  (commit LSN {evt.Source.CommitLsn:X}, xid {evt.Source.TransactionId})");
        }
        return received;
    }

    /// <summary>Waits until the slot's confirmed position passes the server's WAL position after the last commit.</summary>
    static async Task<bool> WaitForSlotAsync(string connectionString, TimeSpan timeout)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT confirmed_flush_lsn >= $1::pg_lsn FROM pg_replication_slots WHERE slot_name = 'cdc_outbox'", connection);
        // The insert position is past every commit made so far (the write position can lag with synchronous_commit off).
        await using (var wal = new NpgsqlCommand("SELECT pg_current_wal_insert_lsn()::text", connection))
            command.Parameters.AddWithValue((string)(await wal.ExecuteScalarAsync())!);
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (await command.ExecuteScalarAsync() is true)
                return true;
            await Task.Delay(200);
        }
        return false;
    }
}
