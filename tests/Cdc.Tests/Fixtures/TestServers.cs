using System.Diagnostics;
using Cdc.Embedded;
using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Testcontainers.Kafka;
using Testcontainers.PostgreSql;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace Cdc.Tests.Fixtures;

/// <summary>
/// The PostgreSQL server and Kafka-protocol broker the end-to-end tests share, started once per test run. In order of
/// preference: addresses from the environment (<c>CDC_TEST_POSTGRES</c>, <c>CDC_TEST_KAFKA</c>), Testcontainers when a
/// Docker engine answers, else the machine's PostgreSQL binaries and librdkafka's mock cluster.
/// </summary>
public sealed class TestServers
{
    static readonly Lazy<Task<TestServers>> Shared = new(StartAsync);

    public required string PostgresConnectionString { get; init; }
    public required string KafkaBootstrapServers { get; init; }
    /// <summary>The mock cluster when that is the broker: it can also create topics without the admin API.</summary>
    public MockKafkaCluster? MockCluster { get; init; }
    /// <summary>One line saying which servers run, for the test output.</summary>
    public required string Description { get; init; }

    static int _described;

    public static async Task<TestServers> GetAsync(IMessageSink? sink = null)
    {
        var servers = await Shared.Value;
        if (sink is not null && Interlocked.Exchange(ref _described, 1) == 0)
            sink.OnMessage(new DiagnosticMessage($"Cdc test servers: {servers.Description}"));
        return servers;
    }

    static async Task<TestServers> StartAsync()
    {
        var postgresFromEnv = Environment.GetEnvironmentVariable("CDC_TEST_POSTGRES");
        var kafkaFromEnv = Environment.GetEnvironmentVariable("CDC_TEST_KAFKA");
        var docker = (postgresFromEnv is null || kafkaFromEnv is null) && DockerAnswers();

        string postgres, postgresWhat;
        if (postgresFromEnv is not null)
            (postgres, postgresWhat) = (postgresFromEnv, "PostgreSQL from CDC_TEST_POSTGRES");
        else if (docker)
        {
            var container = new PostgreSqlBuilder("postgres:16")
                .WithCommand("-c", "wal_level=logical", "-c", "max_replication_slots=64", "-c", "max_wal_senders=64", "-c", "max_connections=300")
                .Build();
            await container.StartAsync();
            OnExit(() => container.DisposeAsync().AsTask().Wait());
            (postgres, postgresWhat) = (container.GetConnectionString(), "PostgreSQL 16 in a Testcontainers container");
        }
        else
        {
            var embedded = await EmbeddedPostgres.StartAsync(new EmbeddedPostgresOptions { MaxConnections = 300, MaxReplicationSlots = 64 });
            OnExit(() => embedded.DisposeAsync().AsTask().Wait());
            (postgres, postgresWhat) = (embedded.ConnectionString, $"PostgreSQL from the machine's binaries on port {embedded.Port}");
        }

        string kafka, kafkaWhat;
        MockKafkaCluster? mock = null;
        if (kafkaFromEnv is not null)
            (kafka, kafkaWhat) = (kafkaFromEnv, "Kafka from CDC_TEST_KAFKA");
        else if (docker)
        {
            var container = new KafkaBuilder("confluentinc/cp-kafka:7.6.1").Build();
            await container.StartAsync();
            OnExit(() => container.DisposeAsync().AsTask().Wait());
            (kafka, kafkaWhat) = (container.GetBootstrapAddress(), "Apache Kafka in a Testcontainers container");
        }
        else
        {
            mock = MockKafkaCluster.Start(brokers: 3);
            OnExit(mock.Dispose);
            (kafka, kafkaWhat) = (mock.BootstrapServers, "librdkafka's Kafka-protocol mock cluster (3 brokers, not Apache Kafka)");
        }

        return new TestServers
        {
            PostgresConnectionString = postgres,
            KafkaBootstrapServers = kafka,
            MockCluster = mock,
            Description = $"{postgresWhat}; {kafkaWhat}",
        };
    }

    /// <summary>Creates a topic with the given partitions, through the mock cluster or the admin API.</summary>
    public async Task CreateTopicAsync(string topic, int partitions)
    {
        if (MockCluster is not null)
        {
            MockCluster.CreateTopic(topic, partitions, replicationFactor: 3);
            return;
        }
        using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = KafkaBootstrapServers }).Build();
        await admin.CreateTopicsAsync([new TopicSpecification { Name = topic, NumPartitions = partitions, ReplicationFactor = 1 }]);
    }

    internal static bool DockerAnswers()
    {
        try
        {
            using var process = Process.Start(new ProcessStartInfo("docker", "info")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            });
            if (process is null)
                return false;
            if (!process.WaitForExit(TimeSpan.FromSeconds(10)))
            {
                process.Kill();
                return false;
            }
            return process.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false; // no docker client
        }
    }

    static void OnExit(Action dispose) => AppDomain.CurrentDomain.ProcessExit += (_, _) =>
    {
        try
        {
            dispose();
        }
        catch
        {
            // Best effort at process exit.
        }
    };
}
