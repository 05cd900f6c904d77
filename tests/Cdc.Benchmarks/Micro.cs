using System.Text;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using Cdc.Contracts;
using Cdc.Mapping;
using Cdc.Outbox.V1;
using Google.Protobuf;
using Timestamp = Google.Protobuf.WellKnownTypes.Timestamp;

namespace Cdc.Benchmarks;

/// <summary>
/// <c>--micro [--quick] [BenchmarkDotNet args]</c>: the per-event work of the hot path that runs without a server.
/// Decoding the replication protocol (Npgsql's pgoutput reader, OutboxRowReader) needs a live walsender and is
/// measured end to end by the drain instead.
/// </summary>
static class MicroMode
{
    public static int Run(string[] args)
    {
        var quick = args.Contains("--quick");
        var rest = args.Where(a => a != "--quick").ToArray();
        // In process: no generated project to build (this repository treats warnings as errors), same JIT settings.
        var job = (quick ? Job.ShortRun : Job.Default.WithWarmupCount(5).WithIterationCount(15))
            .WithToolchain(InProcessEmitToolchain.Instance);
        var config = DefaultConfig.Instance.AddJob(job).WithOptions(ConfigOptions.DisableOptimizationsValidator)
            .WithArtifactsPath(Path.Combine("artifacts", "BenchmarkDotNet")); // artifacts/ is git-ignored
        var summaries = BenchmarkSwitcher.FromTypes([typeof(MappingBenchmarks)]).Run(rest.Length > 0 ? rest : ["--filter", "*"], config);
        return summaries.Any(s => s.HasCriticalValidationErrors || s.Reports.Any(r => !r.Success)) ? 1 : 0;
    }
}

[MemoryDiagnoser]
public class MappingBenchmarks
{
    OutboxEventMapper _mapper = null!;
    OutboxRow _row = null!;
    OutboxRow _rowWithoutHeaders = null!;
    TransactionInfo _tx;
    byte[] _serialized = null!;

    [GlobalSetup]
    public void Setup()
    {
        _mapper = new OutboxEventMapper(new TopicRouter("outbox.event.{aggregate_type}"), "outbox.dlq");
        // The suite's generated row: jsonb payload of about 200 bytes as PostgreSQL renders it, a traceparent header.
        var payload = "{\"note\": \"c4ca4238a0b923820dcc509a6f75849bc81e728d9d4c2f636f067f89cc14862c\", \"lines\": [{\"qty\": 2, \"sku\": \"SKU-1\", \"price\": 19.99}], " +
                      "\"total\": 0.01, \"orderId\": 1, \"currency\": \"EUR\", \"customerId\": \"customer-1\"}";
        _row = new OutboxRow
        {
            Id = Guid.NewGuid().ToString("D"),
            AggregateType = "order",
            AggregateId = "order-1",
            EventType = "OrderPlaced",
            Payload = Encoding.UTF8.GetBytes(payload),
            PayloadKind = PayloadKind.Json,
            Headers = System.Text.Encoding.UTF8.GetBytes("{\"traceparent\": \"00-c4ca4238a0b923820dcc509a6f75849b-8f14e45fceea167a-01\"}"),
            CreatedAt = DateTime.UtcNow,
        };
        _rowWithoutHeaders = new OutboxRow
        {
            Id = _row.Id, AggregateType = _row.AggregateType, AggregateId = _row.AggregateId, EventType = _row.EventType,
            Payload = _row.Payload, PayloadKind = PayloadKind.Json, CreatedAt = _row.CreatedAt,
        };
        _tx = new TransactionInfo(0x16B3748, 750, DateTime.UtcNow);
        _serialized = BuildEvent().ToByteArray();
    }

    /// <summary>The whole mapping of one row: event, headers JSON, topic, Kafka headers and key, Protobuf bytes.</summary>
    [Benchmark(Baseline = true)]
    public MappingResult Map_row_with_traceparent() => _mapper.Map(_row, _tx);

    [Benchmark]
    public MappingResult Map_row_without_headers() => _mapper.Map(_rowWithoutHeaders, _tx);

    /// <summary>Only building the OutboxEvent and serializing it (what Map does besides headers, routing and the record).</summary>
    [Benchmark]
    public byte[] Build_and_serialize_event() => BuildEvent().ToByteArray();

    /// <summary>For comparison, the consumer's side: parsing the record value back.</summary>
    [Benchmark]
    public OutboxEvent Parse_event_as_a_consumer() => OutboxEvent.Parser.ParseFrom(_serialized);

    OutboxEvent BuildEvent()
    {
        var evt = new OutboxEvent
        {
            Id = _row.Id,
            AggregateType = _row.AggregateType!,
            AggregateId = _row.AggregateId!,
            EventType = _row.EventType!,
            Payload = UnsafeByteOperations.UnsafeWrap(_row.Payload),
            PayloadContentType = ContentTypes.Json,
            CreatedAt = Timestamp.FromDateTime(_row.CreatedAt!.Value),
            Source = new Source
            {
                CommitLsn = _tx.CommitLsn,
                TransactionId = _tx.Xid,
                CommitTime = Timestamp.FromDateTime(_tx.CommitTime),
            },
        };
        evt.Headers[HeaderNames.TraceParent] = "00-c4ca4238a0b923820dcc509a6f75849b-8f14e45fceea167a-01";
        return evt;
    }
}
