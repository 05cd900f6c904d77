using System.Diagnostics;
using Cdc.Embedded;
using Cdc.Tests.Fixtures;
using Npgsql;
using Xunit.Abstractions;

namespace Cdc.Tests.Faults;

/// <summary>TLS to PostgreSQL through Npgsql's settings, and secrets kept out of logs, errors and metrics.</summary>
public class SecurityTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);
    const string PostgresSecret = "Pg-S3cret-7f2a";
    const string KafkaSecret = "Kafka-S3cret-9c1e";

    [Fact]
    public async Task Passwords_and_sasl_secrets_never_appear_in_logs_errors_or_metrics()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        var environment = WorkerProcess.Environment(outbox.Options);
        environment["Cdc__Postgres__ConnectionString"] =
            new NpgsqlConnectionStringBuilder(outbox.ConnectionString) { Password = PostgresSecret }.ConnectionString;
        environment["Cdc__Kafka__Producer__sasl.username"] = "cdc";
        environment["Cdc__Kafka__Producer__sasl.password"] = KafkaSecret;
        environment["Logging__LogLevel__Default"] = "Debug"; // the most the worker would ever say

        string metrics;
        using (var worker = WorkerProcess.Start(environment, output))
        {
            await worker.WaitForOutputAsync("Streaming slot", Timeout);
            await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(new TestEvent("order", "o-1", "E")), Timeout);
            using var http = new HttpClient { BaseAddress = new Uri(worker.ListeningUrl) };
            metrics = await http.GetStringAsync("/metrics");
            await worker.TerminateAsync(TimeSpan.FromSeconds(30));
            AssertNoSecret(worker.Output + metrics);
        }

        // Failures print the most: an unreachable database, a missing table, an unreachable broker. Unreachable servers
        // are waited for (the worker says so, then is stopped here); a missing table stops the worker.
        foreach (var (key, value, said) in new[]
                 {
                     ("Cdc__Postgres__ConnectionString", $"Host=127.0.0.1;Port=1;Username=cdc;Password={PostgresSecret};Timeout=3", "PostgreSQL is unreachable"),
                     ("Cdc__Postgres__Table", "public.no_such_table", null),
                     ("Cdc__Kafka__BootstrapServers", "127.0.0.1:1", "No Kafka broker answered"),
                 })
        {
            var failing = new Dictionary<string, string?>(environment) { [key] = value };
            using var worker = WorkerProcess.Start(failing, output);
            if (said is null)
            {
                await worker.WaitForExitAsync(Timeout);
                Assert.NotEqual(0, worker.ExitCode);
            }
            else
            {
                await worker.WaitForOutputAsync(said, Timeout);
                await worker.TerminateAsync(TimeSpan.FromSeconds(30));
            }
            AssertNoSecret(worker.Output);
        }
    }

    static void AssertNoSecret(string text)
    {
        Assert.DoesNotContain(PostgresSecret, text);
        Assert.DoesNotContain(KafkaSecret, text);
    }

    [Fact]
    public async Task The_worker_streams_over_TLS_when_the_connection_string_asks_for_it()
    {
        var shared = await fixture.GetAsync();
        var certificates = Directory.CreateTempSubdirectory("cdc-tls-").FullName;
        try
        {
            await Run("openssl", "req", "-new", "-x509", "-days", "1", "-nodes", "-subj", "/CN=localhost",
                "-out", $"{certificates}/server.crt", "-keyout", $"{certificates}/server.key");
            await Run("chmod", "600", $"{certificates}/server.key"); // PostgreSQL refuses a key others can read
            if (Environment.UserName == "root")
                await Run("chown", "-R", "postgres:", certificates);

            await using var postgres = await EmbeddedPostgres.StartAsync(new EmbeddedPostgresOptions
            {
                Settings = new Dictionary<string, string>
                {
                    ["ssl"] = "on",
                    ["ssl_cert_file"] = $"{certificates}/server.crt",
                    ["ssl_key_file"] = $"{certificates}/server.key",
                },
            });
            var servers = new TestServers
            {
                PostgresConnectionString = postgres.ConnectionString,
                KafkaBootstrapServers = shared.KafkaBootstrapServers,
                MockCluster = shared.MockCluster,
                Description = "own PostgreSQL with TLS",
            };
            await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
            var environment = WorkerProcess.Environment(outbox.Options);
            environment["Cdc__Postgres__ConnectionString"] =
                new NpgsqlConnectionStringBuilder(postgres.ConnectionString) { SslMode = SslMode.Require }.ConnectionString;

            using var worker = WorkerProcess.Start(environment, output);
            await worker.WaitForOutputAsync("Streaming slot", Timeout);
            await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(new TestEvent("order", "o-1", "OverTls")), Timeout);
            Assert.Single(outbox.ReadTopic(outbox.Topic("order")));

            // The walsender that streams the slot is on an encrypted connection.
            await using var connection = new NpgsqlConnection(postgres.ConnectionString);
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand("""
                SELECT l.ssl FROM pg_replication_slots s JOIN pg_stat_ssl l ON l.pid = s.active_pid WHERE s.slot_name = $1
                """, connection);
            command.Parameters.AddWithValue(outbox.Options.Postgres.Slot);
            Assert.Equal(true, await command.ExecuteScalarAsync());
        }
        finally
        {
            Directory.Delete(certificates, recursive: true);
        }
    }

    static async Task Run(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file, args) { RedirectStandardError = true, RedirectStandardOutput = true };
        using var process = Process.Start(info)!;
        var error = process.StandardError.ReadToEndAsync();
        await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        Assert.True(process.ExitCode == 0, $"{file} failed: {await error}");
    }
}
