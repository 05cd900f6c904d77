using System.Collections.Concurrent;
using Cdc.Configuration;
using Cdc.Consumer;
using Cdc.Outbox.V1;
using Cdc.Samples.OrderSaga;
using Microsoft.Extensions.Logging;
using Npgsql;
using Xunit.Abstractions;

namespace Cdc.Tests.Fixtures;

/// <summary>
/// The order saga's three services on the shared servers, each wired as in production: its own schema (tables, outbox,
/// inbox), its own connector (orders and payments in-process, inventory as the real worker binary so it can be
/// SIGKILLed), and its own consumer group. Every committed handler run is audited per (consumer, event id).
/// </summary>
public sealed class SagaHarness : IAsyncDisposable
{
    readonly TestServers _servers;
    readonly ITestOutputHelper _output;
    readonly ILoggerFactory _loggers;
    readonly Dictionary<string, CdcOptions> _connectorOptions = [];
    readonly List<InProcessRelay> _relays = [];
    readonly Dictionary<string, SagaConsumer> _consumers = [];
    WorkerProcess? _inventoryConnector;

    SagaHarness(TestServers servers, ITestOutputHelper output, string run)
    {
        _servers = servers;
        _output = output;
        Run = run;
        _loggers = LoggerFactory.Create(b => b.AddProvider(new TestLoggerProvider(output)).SetMinimumLevel(LogLevel.Information));
        DataSource = NpgsqlDataSource.Create(servers.PostgresConnectionString);
        Orders = new OrdersService(DataSource, _loggers.CreateLogger<OrdersService>(), $"{run}_orders");
        Inventory = new InventoryService(DataSource, _loggers.CreateLogger<InventoryService>(), $"{run}_inventory");
        Payments = new PaymentsService(DataSource, _loggers.CreateLogger<PaymentsService>(), $"{run}_payments");
        Topics = new SagaTopics($"{run}.{{aggregate_type}}");
    }

    public string Run { get; }
    public NpgsqlDataSource DataSource { get; }
    public OrdersService Orders { get; }
    public InventoryService Inventory { get; }
    public PaymentsService Payments { get; }
    public SagaTopics Topics { get; }
    public string AuditTable => $"\"{Run}_audit\".handler_runs";

    /// <summary>Every handler invocation, committed or not, per (consumer, event id).</summary>
    public ConcurrentDictionary<(string Consumer, string EventId), int> HandlerInvocations { get; } = new();

    IEnumerable<(string Name, SagaService Service)> Services => [("orders", Orders), ("inventory", Inventory), ("payments", Payments)];

    /// <summary>Creates the schemas and topics; nothing runs yet.</summary>
    public static async Task<SagaHarness> CreateAsync(TestServers servers, ITestOutputHelper output)
    {
        var saga = new SagaHarness(servers, output, TestNames.Unique("saga"));
        foreach (var (_, service) in saga.Services)
            await service.CreateSchemaAsync();
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"""
            CREATE SCHEMA "{saga.Run}_audit";
            CREATE TABLE {saga.AuditTable} (consumer text NOT NULL, event_id text NOT NULL, event_type text NOT NULL, at timestamptz NOT NULL DEFAULT now());
            """);
        // Up front, so no client races the broker's auto-creation.
        foreach (var topic in saga.Topics.All)
            await servers.CreateTopicAsync(topic, partitions: 4);
        foreach (var (name, service) in saga.Services)
        {
            var options = InProcessRelay.OptionsFor(servers, $"{saga.Run}_{name}", service.OutboxTable, o =>
            {
                o.Kafka.TopicTemplate = $"{saga.Run}.{{aggregate_type}}"; // one template, three aggregate types: three topics
                o.Kafka.DeadLetterTopic = $"{saga.Run}.{name}.dlq";
            });
            saga._connectorOptions[name] = options;
            await servers.CreateTopicAsync(options.Kafka.DeadLetterTopic, partitions: 1);
            await servers.CreateTopicAsync(saga.ConsumerDeadLetterTopic(name), partitions: 1);
        }
        output.WriteLine($"saga {saga.Run}: schemas {saga.Run}_*, topics {string.Join(", ", saga.Topics.All)}");
        return saga;
    }

    public IEnumerable<string> DeadLetterTopics => Services.SelectMany(s => new[] { _connectorOptions[s.Name].Kafka.DeadLetterTopic, ConsumerDeadLetterTopic(s.Name) });

    string ConsumerDeadLetterTopic(string name) => $"{Run}.{name}.consumer-dlq";

    /// <summary>Starts the three connectors and waits until each streams.</summary>
    public async Task StartConnectorsAsync()
    {
        _relays.Add(await InProcessRelay.StartAsync(_connectorOptions["orders"], _output));
        _relays.Add(await InProcessRelay.StartAsync(_connectorOptions["payments"], _output));
        _inventoryConnector = WorkerProcess.Start(WorkerProcess.Environment(_connectorOptions["inventory"]), _output);
        await _inventoryConnector.WaitForOutputAsync("Streaming slot", TimeSpan.FromSeconds(60));
    }

    /// <summary>SIGKILLs the inventory service's connector (no flush, no confirmation) and starts a new one on the same slot.</summary>
    public void KillInventoryConnector()
    {
        _inventoryConnector!.KillHard();
        _inventoryConnector.Dispose();
        _inventoryConnector = WorkerProcess.Start(WorkerProcess.Environment(_connectorOptions["inventory"]), _output);
    }

    public async Task StartConsumersAsync()
    {
        foreach (var (name, service) in Services)
        {
            var consumer = new SagaConsumer(this, name, service);
            _consumers[name] = consumer;
            await consumer.StartAsync();
        }
        // Joining a group takes the broker a few seconds; the saga starts once every service listens.
        foreach (var consumer in _consumers.Values)
            await OutboxTopics.WaitUntilAsync(() => consumer.Current.Status.AssignedPartitions > 0, TimeSpan.FromSeconds(60),
                $"consumer {consumer.Name} has partitions");
    }

    public SagaConsumer Consumer(string name) => _consumers[name];

    public void AssertConnectorsRunning()
    {
        foreach (var relay in _relays)
            relay.AssertRunning();
        if (_inventoryConnector is { HasExited: true })
            throw new Xunit.Sdk.XunitException($"The inventory connector exited ({_inventoryConnector.ExitCode}):\n{_inventoryConnector.Output}");
    }

    /// <summary>Each handler run is audited inside its transaction: only runs that committed leave a row.</summary>
    Func<OutboxEvent, NpgsqlTransaction, CancellationToken, Task> Audited(string consumer, SagaService service) => async (evt, tx, ct) =>
    {
        HandlerInvocations.AddOrUpdate((consumer, evt.Id), 1, (_, n) => n + 1);
        await using (var audit = new NpgsqlCommand($"INSERT INTO {AuditTable} (consumer, event_id, event_type) VALUES ($1, $2, $3)", tx.Connection, tx))
        {
            audit.Parameters.AddWithValue(consumer);
            audit.Parameters.AddWithValue(evt.Id);
            audit.Parameters.AddWithValue(evt.EventType);
            await audit.ExecuteNonQueryAsync(ct);
        }
        await service.HandleAsync(evt, tx, ct);
    };

    public async ValueTask DisposeAsync()
    {
        foreach (var consumer in _consumers.Values)
            await consumer.StopAsync();
        foreach (var relay in _relays)
            await relay.DisposeAsync();
        _inventoryConnector?.Dispose();
        await InProcessRelay.DropSlotAndPublicationAsync(_connectorOptions["inventory"]);
        try
        {
            await Sql.ExecuteAsync(_servers.PostgresConnectionString,
                string.Join("\n", Services.Select(s => $"DROP SCHEMA IF EXISTS \"{s.Service.Schema}\" CASCADE;")) + $"DROP SCHEMA IF EXISTS \"{Run}_audit\" CASCADE;");
        }
        catch (NpgsqlException e)
        {
            _output.WriteLine($"cleanup: {e.Message}");
        }
        await DataSource.DisposeAsync();
        _loggers.Dispose();
    }

    /// <summary>One service's consumer group; an instance can crash and be replaced, and the counts add up across instances.</summary>
    public sealed class SagaConsumer(SagaHarness saga, string name, SagaService service)
    {
        readonly List<OutboxConsumerService> _instances = [];

        public string Name { get; } = name;
        public OutboxConsumerService Current => _instances[^1];
        public long Processed => _instances.Sum(i => i.Status.Processed);
        public long Duplicates => _instances.Sum(i => i.Status.Duplicates);
        public long DeadLettered => _instances.Sum(i => i.Status.DeadLettered);
        public int Instances => _instances.Count;

        public OutboxConsumerOptions Options => new()
        {
            BootstrapServers = saga._servers.KafkaBootstrapServers,
            GroupId = $"{saga.Run}-{Name}",
            Topics = service.SubscribesTo(saga.Topics).ToList(),
            DeadLetterTopic = saga.ConsumerDeadLetterTopic(Name),
            InboxTable = service.InboxTable,
            // Commits are rare enough that a crash almost always leaves processed events uncommitted.
            CommitInterval = TimeSpan.FromSeconds(3),
            // The broker's minimum session timeout: a crashed instance's partitions are handed over soon after.
            Consumer = { ["session.timeout.ms"] = "6000", ["heartbeat.interval.ms"] = "500" },
        };

        public async Task StartAsync()
        {
            var instance = new OutboxConsumerService(Options, saga.DataSource, saga.Audited(Name, service),
                saga._loggers.CreateLogger<OutboxConsumerService>());
            _instances.Add(instance);
            await instance.StartAsync(CancellationToken.None);
        }

        /// <summary>
        /// Crashes the running instance right after it processed an event (so its database has work its Kafka offsets do
        /// not show) and starts a new one in the group.
        /// </summary>
        public async Task CrashAndRestartAsync()
        {
            var before = Current.Status.Processed;
            var deadline = DateTime.UtcNow.AddSeconds(20);
            while (Current.Status.Processed == before && DateTime.UtcNow < deadline)
                await Task.Delay(5);
            await Current.AbandonAsync();
            saga._output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} crashed consumer {Name} after {Current.Status.Processed} events");
            await StartAsync();
        }

        public async Task StopAsync()
        {
            if (_instances.Count > 0)
                await Current.StopAsync(CancellationToken.None);
        }
    }
}
