using System.Diagnostics;
using System.Security.Cryptography;
using Confluent.Kafka;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using Wolverine;
using Wolverine.Kafka;
using Wolverine.Postgresql;
using Wolverine.RDBMS;
using Wolverine.Runtime;

namespace Cdc.Benchmarks;

/// <summary>The event Wolverine publishes: the outbox row's fields, serialized by Wolverine (System.Text.Json).</summary>
public sealed record OrderPlaced(Guid Id, string AggregateType, string AggregateId, string EventType, string Payload,
    Dictionary<string, string> Headers, DateTimeOffset CreatedAt);

/// <summary>
/// <c>--wolverine CONNECTION BOOTSTRAP EVENTS WARMUP WRITERS ROWS_PER_TX</c>: WolverineFx's durable outbox on PostgreSQL,
/// publishing to Kafka with an idempotent producer, in a process of its own. Writers publish in transactions of
/// ROWS_PER_TX messages (each enlisted in the transaction, flushed after commit, as Wolverine's outbox is used);
/// "drained" means every message was published and <c>wolverine_outgoing_envelopes</c> is empty again. Prints
/// <c>START</c> after the warm-up drained and <c>END events seconds write_seconds</c>, then waits for stdin to close.
/// </summary>
static class WolverineMode
{
    public const string Topic = "wolverine.order";
    const string Schema = "wolverine";

    public static async Task<int> RunAsync(string[] args)
    {
        var connectionString = args[0];
        var bootstrap = args[1];
        var events = long.Parse(args[2]);
        var warmup = long.Parse(args[3]);
        var writers = int.Parse(args[4]);
        var rowsPerTx = int.Parse(args[5]);

        var builder = Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.UseWolverine(opts =>
        {
            opts.ApplicationAssembly = typeof(WolverineMode).Assembly;
            opts.UseRuntimeCompilation(); // Wolverine 6 generates its handler/sender code; no pre-generated code here
            opts.Durability.Mode = DurabilityMode.Solo;
            opts.PersistMessagesWithPostgresql(connectionString, Schema);
            // No AutoProvision(): the mock broker has no CreateTopics API; the parent created the topic on the broker.
            opts.UseKafka(bootstrap).ConfigureProducers(p =>
            {
                p.EnableIdempotence = true;
                p.Acks = Acks.All;
                p.LingerMs = 5;
            });
            opts.PublishMessage<OrderPlaced>().ToKafkaTopic(Topic).UseDurableOutbox();
        });
        using var host = builder.Build();
        await host.StartAsync();
        var runtime = host.Services.GetRequiredService<IWolverineRuntime>();
        await using var dataSource = NpgsqlDataSource.Create(connectionString);

        var database = runtime.Storage as IMessageDatabase
                       ?? throw new InvalidOperationException($"Wolverine's message store is {runtime.Storage.GetType().Name}, not a database");
        await PublishAsync(runtime, database, dataSource, 0, warmup, writers, rowsPerTx);
        await WaitDrainedAsync(dataSource);
        Console.WriteLine("START");

        var clock = Stopwatch.StartNew();
        await PublishAsync(runtime, database, dataSource, warmup, events, writers, rowsPerTx);
        var written = clock.Elapsed;
        await WaitDrainedAsync(dataSource);
        Console.WriteLine($"END {events} {clock.Elapsed.TotalSeconds:R} {written.TotalSeconds:R}");

        while (Console.ReadLine() is not null) { }
        await host.StopAsync();
        return 0;
    }

    static async Task PublishAsync(IWolverineRuntime runtime, IMessageDatabase database, NpgsqlDataSource dataSource, long first, long count, int writers, int rowsPerTx)
    {
        var batches = (count + rowsPerTx - 1) / rowsPerTx;
        long next = -1;
        await Task.WhenAll(Enumerable.Range(0, writers).Select(async _ =>
        {
            long batch;
            while ((batch = Interlocked.Increment(ref next)) < batches)
            {
                var start = first + batch * rowsPerTx;
                var end = Math.Min(start + rowsPerTx, first + count);
                await using var connection = await dataSource.OpenConnectionAsync();
                await using var tx = await connection.BeginTransactionAsync();
                var context = new MessageContext(runtime);
                await context.EnlistInOutboxAsync(new DatabaseEnvelopeTransaction(database, tx));
                for (var g = start; g < end; g++)
                    await context.PublishAsync(Event(g));
                await tx.CommitAsync();
                await context.FlushOutgoingMessagesAsync();
            }
        }));
    }

    static async Task WaitDrainedAsync(NpgsqlDataSource dataSource)
    {
        await using var command = dataSource.CreateCommand($"SELECT count(*) FROM {Schema}.wolverine_outgoing_envelopes");
        while ((long)(await command.ExecuteScalarAsync())! > 0)
            await Task.Delay(20);
    }

    /// <summary>The same event as the generated outbox rows (see Database.InsertSql), about 200 bytes of JSON payload.</summary>
    static OrderPlaced Event(long g)
    {
        static string Md5(long v) => Convert.ToHexStringLower(MD5.HashData(System.Text.Encoding.ASCII.GetBytes(v.ToString())));
        var payload = $"{{\"note\": \"{Md5(g)}{Md5(g + 1)}\", \"lines\": [{{\"qty\": {1 + g % 5}, \"sku\": \"SKU-{g % 997}\", \"price\": 19.99}}], " +
                      $"\"total\": {g % 100000 / 100.0:0.00}, \"orderId\": {g}, \"currency\": \"EUR\", \"customerId\": \"customer-{g % 5000}\"}}";
        var headers = new Dictionary<string, string> { ["traceparent"] = $"00-{Md5(g)}-{Md5(g + 7)[..16]}-01" };
        return new OrderPlaced(Guid.NewGuid(), "order", $"order-{g % 10000}", "OrderPlaced", payload, headers, DateTimeOffset.UtcNow);
    }
}
