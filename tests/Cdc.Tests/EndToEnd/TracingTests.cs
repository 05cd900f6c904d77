using System.Diagnostics;
using System.Text;
using Cdc.Telemetry;
using Cdc.Tests.Fixtures;
using OpenTelemetry;
using OpenTelemetry.Trace;
using Xunit.Abstractions;

namespace Cdc.Tests.EndToEnd;

/// <summary>A trace started by the service that wrote the row continues through Kafka to the consumer.</summary>
public class TracingTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    [Fact]
    public async Task A_row_with_traceparent_is_sent_in_a_producer_span_of_that_trace_and_the_record_carries_the_span()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        var spans = new List<Activity>();
        using var tracing = Sdk.CreateTracerProviderBuilder().AddSource(OutboxTracing.SourceName).AddInMemoryExporter(spans).Build();
        await outbox.StartRelayAsync();

        const string traceId = "4bf92f3577b34da6a3ce929d0e0e4736", parentSpanId = "00f067aa0ba902b7";
        var traced = new TestEvent("order", "o-1", "Traced", "{}",
            $$"""{"traceparent":"00-{{traceId}}-{{parentSpanId}}-01","tracestate":"vendor=abc"}""");
        var untraced = new TestEvent("order", "o-2", "Untraced");
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(traced, untraced), TimeSpan.FromSeconds(60));
        tracing.ForceFlush();

        var topic = outbox.Topic("order");
        var mine = spans.Where(s => (string?)s.GetTagItem("messaging.destination.name") == topic).ToList();
        var span = Assert.Single(mine); // the untraced row forces no span
        Assert.Equal($"send {topic}", span.DisplayName);
        Assert.Equal(ActivityKind.Producer, span.Kind);
        Assert.Equal(traceId, span.TraceId.ToHexString());
        Assert.Equal(parentSpanId, span.ParentSpanId.ToHexString());
        Assert.Equal("vendor=abc", span.TraceStateString);
        Assert.Equal("kafka", span.GetTagItem("messaging.system"));
        Assert.Equal("send", span.GetTagItem("messaging.operation.name"));
        Assert.Equal(traced.Id.ToString(), span.GetTagItem("messaging.message.id"));
        Assert.Equal(ActivityStatusCode.Unset, span.Status);

        var records = outbox.ReadTopic(topic).ToDictionary(r => Encoding.UTF8.GetString(r.Message.Headers.GetLastBytes("id")));
        Assert.Equal($"00-{traceId}-{span.SpanId.ToHexString()}-01",
            Encoding.UTF8.GetString(records[traced.Id.ToString()].Message.Headers.GetLastBytes("traceparent")));
        Assert.False(records[untraced.Id.ToString()].Message.Headers.TryGetLastBytes("traceparent", out _));
    }
}
