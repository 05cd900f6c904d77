using System.Text;
using Cdc.Outbox.V1;
using Cdc.Tests.Fixtures;
using Xunit.Abstractions;

namespace Cdc.Tests.EndToEnd;

/// <summary>
/// The NativeAOT worker the container image ships (built by <see cref="ContainerImageBuild"/> from the Dockerfile's own
/// commands), run as the image runs it, against the test servers: the same checks as the JIT worker's.
/// </summary>
[Collection(ContainerImageCollection.Name)]
public class NativeWorkerTests(ITestOutputHelper output, ServersFixture fixture, ContainerImageBuild build) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task The_native_worker_relays_rows_with_key_headers_and_value_confirms_the_slot_and_exits_zero_on_SIGTERM()
    {
        var image = await build.GetAsync();
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order", "customer"]);
        var environment = image.Environment.ToDictionary(kv => kv.Key, kv => (string?)kv.Value);
        foreach (var (key, value) in WorkerProcess.Environment(outbox.Options))
            environment[key] = value;
        environment["ASPNETCORE_URLS"] = "http://127.0.0.1:0"; // not the image's 0.0.0.0:8080 on a shared machine

        using var worker = WorkerProcess.Start(environment, output, image.Command());
        await worker.WaitForOutputAsync("Streaming slot", Timeout);
        // The process is the native binary itself: no .NET runtime library is loaded into it.
        Assert.Equal(image.Entrypoint[0], new FileInfo($"/proc/{worker.Id}/exe").LinkTarget);
        Assert.DoesNotContain("libcoreclr.so", await File.ReadAllTextAsync($"/proc/{worker.Id}/maps"));

        var written = new List<TestEvent>();
        ulong lastCommit = 0;
        for (var t = 0; t < 10; t++)
        {
            var events = Enumerable.Range(0, 10).Select(i => new TestEvent(
                i % 3 == 0 ? "customer" : "order", $"a-{i % 4}", $"Event{t}",
                $$"""{"n": {{t * 10 + i}}, "text": "ü"}""",
                $$"""{"tenant": "acme", "attempt": {{t}}}""")).ToArray();
            written.AddRange(events);
            lastCommit = await outbox.CommitAsync(events);
        }
        await outbox.WaitForConfirmedAsync(lastCommit, Timeout);

        var records = outbox.ReadTopic(outbox.Topic("order")).Concat(outbox.ReadTopic(outbox.Topic("customer"))).ToList();
        Assert.Equal(0, DeliveryAssert.EveryEventOnce(written, DeliveryAssert.Ids(records)));
        var byId = written.ToDictionary(e => e.Id.ToString());
        foreach (var record in records)
        {
            var sent = byId[DeliveryAssert.Header(record, "id")];
            Assert.Equal(outbox.Topic(sent.AggregateType!), record.Topic);
            Assert.Equal(sent.AggregateId, Encoding.UTF8.GetString(record.Message.Key));
            Assert.Equal(sent.EventType, DeliveryAssert.Header(record, "event_type"));
            Assert.Equal("acme", DeliveryAssert.Header(record, "tenant"));
            Assert.Equal(sent.EventType[5..], DeliveryAssert.Header(record, "attempt")); // a number, as its JSON text

            var value = OutboxEvent.Parser.ParseFrom(record.Message.Value);
            Assert.Equal(sent.Id.ToString(), value.Id);
            Assert.Equal(sent.AggregateType, value.AggregateType);
            Assert.Equal(sent.AggregateId, value.AggregateId);
            Assert.Equal(sent.EventType, value.EventType);
            Assert.Equal("application/json", value.PayloadContentType);
            Assert.Equal(sent.Payload, value.Payload.ToStringUtf8()); // already in jsonb's rendering
            Assert.Equal("acme", value.Headers["tenant"]);
            Assert.NotEqual(0UL, value.Source.CommitLsn);
            Assert.True(value.Source.CommitLsn <= lastCommit);
        }

        using (var http = new HttpClient { BaseAddress = new Uri(worker.ListeningUrl), Timeout = TimeSpan.FromSeconds(10) })
        {
            Assert.Equal("\"ok\"", await http.GetStringAsync("/healthz"));
            Assert.Equal(System.Net.HttpStatusCode.OK, (await http.GetAsync("/readyz")).StatusCode);
            var metrics = await http.GetStringAsync("/metrics");
            var published = metrics.Split('\n').Single(l => l.StartsWith("cdc_events_published_total{", StringComparison.Ordinal)
                                                          && l.Contains($"messaging_destination_name=\"{outbox.Topic("order")}\"", StringComparison.Ordinal));
            Assert.Equal(written.Count(e => e.AggregateType == "order").ToString(), published[(published.LastIndexOf('}') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries)[0]);
        }

        var took = await worker.TerminateAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(0, worker.ExitCode);
        output.WriteLine($"{records.Count} records with key, headers and value as written; slot confirmed; SIGTERM exit in {took.TotalSeconds:0.0} s");
    }

    [Fact]
    public async Task The_native_worker_frames_values_with_the_ids_of_a_Schema_Registry()
    {
        // Confluent.SchemaRegistry reads the registry's answers with Newtonsoft.Json's reflection: this is what shows the
        // native binary keeps what it needs (Cdc.Worker.csproj roots both assemblies).
        var image = await build.GetAsync();
        var servers = await fixture.GetAsync();
        await using var registry = await Cdc.Embedded.FakeSchemaRegistry.StartAsync(userInfo: "cdc:s3cret");
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        var environment = image.Environment.ToDictionary(kv => kv.Key, kv => (string?)kv.Value);
        foreach (var (key, value) in WorkerProcess.Environment(outbox.Options))
            environment[key] = value;
        environment["ASPNETCORE_URLS"] = "http://127.0.0.1:0";
        environment["Cdc__Kafka__SchemaRegistry__Url"] = registry.Url;
        environment["Cdc__Kafka__SchemaRegistry__basic.auth.user.info"] = "cdc:s3cret";

        using var worker = WorkerProcess.Start(environment, output, image.Command());
        await worker.WaitForOutputAsync("Streaming slot", Timeout);
        var written = Enumerable.Range(0, 5).Select(i => new TestEvent("order", "o-1", $"E{i}")).ToArray();
        var commit = await outbox.CommitAsync(written);
        await outbox.WaitForConfirmedAsync(commit, Timeout);

        var prefix = Cdc.Contracts.SchemaRegistry.OutboxEventFraming.Prefix(Assert.Single(registry.Versions($"{outbox.Topic("order")}-value")));
        var records = outbox.ReadTopic(outbox.Topic("order")).OrderBy(r => r.Offset.Value).ToList();
        Assert.Equal(written.Select(e => e.Id.ToString()), records.Select(r => Cdc.Contracts.SchemaRegistry.OutboxEventFraming.Parse(r.Message.Value).Id));
        Assert.All(records, r => Assert.Equal(prefix, r.Message.Value[..prefix.Length]));
        await worker.TerminateAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(0, worker.ExitCode);
    }
}
