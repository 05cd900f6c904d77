using System.Text.Json;
using System.Text.Json.Nodes;
using Cdc.Embedded;
using Cdc.Tests.Fixtures;
using Cdc.Tests.Operations;
using Xunit.Abstractions;

namespace Cdc.Tests.SchemaRegistry;

/// <summary>
/// A cross-check by a client nobody in this project wrote: Confluent's JavaScript <c>ProtobufDeserializer</c>
/// (@confluentinc/schemaregistry, pinned in js/package-lock.json, installed by <c>.ci/install-confluent-serdes</c>) reads the
/// connector's records, finding the schema by the id in each value against the fake registry and building the message type
/// from the registered descriptor. Needs node and npm, which CI has (the helm install uses npm too): without them this
/// test fails saying so, rather than passing unrun.
/// </summary>
public class ConfluentJavaScriptDeserializerTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly Lazy<string> NodeModules = new(() => ToolProcess.Install("install-confluent-serdes"), LazyThreadSafetyMode.ExecutionAndPublication);

    [Fact]
    public async Task Confluents_JavaScript_ProtobufDeserializer_reads_the_connectors_records_and_dead_letters()
    {
        var servers = await fixture.GetAsync();
        await using var registry = await FakeSchemaRegistry.StartAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"], aggregateTypeNullable: true,
            configure: o => o.Kafka.SchemaRegistry.Url = registry.Url);
        await outbox.StartRelayAsync();

        var events = new[]
        {
            new TestEvent("order", "o-1", "OrderPlaced", """{"total":12.5,"lines":[1,2]}""", """{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","attempt":2}"""),
            new TestEvent("order", "o-2", "OrderPaid", """{"amount":3}"""),
        };
        var deadLetter = new TestEvent(null, "o-3", "NoType");
        var commit = await outbox.CommitAsync([.. events, deadLetter]);
        await outbox.WaitForConfirmedAsync(commit, TimeSpan.FromSeconds(60));
        var records = outbox.ReadTopic(outbox.Topic("order")).OrderBy(r => r.Offset.Value).Concat(outbox.ReadTopic(outbox.DeadLetterTopic)).ToList();
        Assert.Equal(3, records.Count);

        var input = new JsonObject
        {
            ["registryUrl"] = registry.Url,
            ["records"] = new JsonArray([.. records.Select(r => (JsonNode)new JsonObject
            {
                ["topic"] = r.Topic,
                ["value"] = Convert.ToBase64String(r.Message.Value),
            })]),
        };
        var script = Path.Combine(RepositoryFiles.Root, "tests", "Cdc.Tests", "SchemaRegistry", "js", "decode.cjs");
        var result = ToolProcess.Run("node", [script], TimeSpan.FromMinutes(1), input.ToJsonString(),
            new Dictionary<string, string> { ["NODE_PATH"] = NodeModules.Value });
        Assert.True(result.ExitCode == 0, $"node {script} failed:\n{result.Stderr}");
        output.WriteLine($"decoded by Confluent's JavaScript ProtobufDeserializer: {result.Stdout}");
        var decoded = JsonNode.Parse(result.Stdout)!.AsArray();

        Assert.Equal(3, decoded.Count);
        foreach (var (e, d) in events.Append(deadLetter).Zip(decoded))
        {
            Assert.Equal("cdc.outbox.v1.OutboxEvent", (string?)d!["typeName"]);
            Assert.Equal(e.Id.ToString(), (string?)d["id"]);
            Assert.Equal(e.AggregateType ?? "", (string?)d["aggregateType"]);
            Assert.Equal(e.AggregateId, (string?)d["aggregateId"]);
            Assert.Equal(e.EventType, (string?)d["eventType"]);
            Assert.Equal("application/json", (string?)d["payloadContentType"]);
            Assert.True(JsonNode.DeepEquals(JsonNode.Parse(e.Payload),
                JsonNode.Parse(Convert.FromBase64String((string)d["payload"]!))), $"payload {d["payload"]}");
            Assert.NotEqual("0", (string?)d["commitLsn"]);
            Assert.NotNull((string?)d["createdAtSeconds"]);
        }
        var headers = decoded[0]!["headers"]!.AsObject();
        Assert.Equal("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", (string?)headers["traceparent"]);
        Assert.Equal("2", (string?)headers["attempt"]);
        // It asked the registry for the writer's schema by id, as any Confluent deserializer does.
        Assert.Contains(registry.Requests, r => r.StartsWith("GET /schemas/ids/", StringComparison.Ordinal));
    }
}
