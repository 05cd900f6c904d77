using System.Globalization;
using System.Text;
using System.Text.Json;
using Cdc.Contracts;
using Cdc.Outbox.V1;
using Confluent.Kafka;

namespace Cdc.Soak;

/// <summary>One record read back: what the checks need, nothing more (a long run reads a few hundred thousand).</summary>
readonly record struct Delivered(int Topic, int Partition, long Offset, Guid Id, int Aggregate, int Seq, bool Updated, string? Malformed, ulong CommitLsn = 0);

/// <summary>
/// One record of the dead-letter topic: its <c>id</c> and <c>error</c> headers and what its value (an OutboxEvent, or
/// none for the headers-only form) says; <see cref="ValueProblem"/> when the value is not an OutboxEvent of that id.
/// </summary>
sealed record DeadLetterRecord(long Offset, Guid Id, string? IdHeader, string? Error, int ValueBytes, int PayloadBytes,
    string? AggregateType, string? AggregateId, string? ValueProblem);

/// <summary>
/// Reads one topic from the beginning of every partition while the soak runs, and at the end up to the high
/// watermarks. Why during the run and not only at the end: librdkafka's mock broker keeps at most 5 MiB per partition
/// (rdkafka_mock.c: <c>mpart->max_size = 1024 * 1024 * 5</c>) and drops the oldest batches beyond it, so a long run
/// cannot be read back from offset 0 at the end. Offsets of an idempotent, non-transactional producer are contiguous,
/// so any skipped offset means records this reader never saw (it fell behind the retention): counted as gaps, and
/// a run with gaps is inconclusive.
/// </summary>
/// <remarks>The dead-letter topic's records (<paramref name="deadLetters"/>) go to <see cref="DeadLetters"/> instead of <see cref="Records"/>.</remarks>
sealed class TopicTail(string bootstrapServers, string topic, int topicIndex, int partitions, bool deadLetters, RunLog log) : IDisposable
{
    readonly long[] _next = new long[partitions];
    readonly long[] _high = Enumerable.Repeat(-1L, partitions).ToArray();
    readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    volatile bool _finish;
    volatile bool _abort;
    Thread? _thread;

    public string Topic { get; } = topic;
    public List<Delivered> Records { get; } = [];
    public List<DeadLetterRecord> DeadLetters { get; } = [];
    public long GapOffsets { get; private set; }
    public List<string> GapNotes { get; } = [];
    public int ConsumeErrors { get; private set; }
    public long Read => _next.Sum();
    public long HighTotal => _high.Sum();

    public void Start()
    {
        _thread = new Thread(Run) { IsBackground = true, Name = $"tail {Topic}" };
        _thread.Start();
    }

    /// <summary>Reads on until every partition is read to the high watermark it has now (the producer must be stopped).</summary>
    public async Task FinishAsync(TimeSpan timeout)
    {
        _finish = true;
        var finished = await Task.WhenAny(_done.Task, Task.Delay(timeout));
        if (finished != _done.Task)
        {
            _abort = true;
            throw new TimeoutException($"Reading {Topic}: {Read} of {HighTotal} records read after {timeout}");
        }
        await _done.Task;
    }

    void Run()
    {
        try
        {
            using var consumer = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
            {
                BootstrapServers = bootstrapServers,
                GroupId = $"soak-reader-{Guid.NewGuid():N}",
                EnableAutoCommit = false,
                EnablePartitionEof = true,
                AutoOffsetReset = AutoOffsetReset.Earliest,
                FetchWaitMaxMs = 100,
            }).SetLogHandler((_, _) => { }).SetErrorHandler((_, _) => { }).Build(); // brokers go down on purpose
            consumer.Assign(Enumerable.Range(0, partitions).Select(p => new TopicPartitionOffset(Topic, p, Offset.Beginning)));
            while (!_abort)
            {
                if (_finish && _high[0] < 0)
                {
                    try
                    {
                        var high = Enumerable.Range(0, partitions)
                            .Select(p => consumer.QueryWatermarkOffsets(new TopicPartition(Topic, p), TimeSpan.FromSeconds(10)).High.Value)
                            .ToArray();
                        high.CopyTo(_high, 0);
                    }
                    catch (KafkaException)
                    {
                        ConsumeErrors++;
                    }
                }
                if (_high[0] >= 0 && Enumerable.Range(0, partitions).All(p => _next[p] >= _high[p]))
                    break;
                ConsumeResult<byte[], byte[]>? result;
                try
                {
                    result = consumer.Consume(TimeSpan.FromMilliseconds(200));
                }
                catch (ConsumeException)
                {
                    ConsumeErrors++;
                    continue;
                }
                if (result is null || result.IsPartitionEOF)
                    continue;
                var partition = result.Partition.Value;
                var offset = result.Offset.Value;
                if (offset < _next[partition])
                    continue; // read again by the consumer itself (e.g. after a reconnect): already counted
                if (offset > _next[partition])
                {
                    GapOffsets += offset - _next[partition];
                    var note = $"{Topic}[{partition}] offsets {_next[partition]}..{offset - 1} skipped (gone from the mock broker before they were read)";
                    GapNotes.Add(note);
                    log.Info("READER GAP: " + note);
                }
                _next[partition] = offset + 1;
                if (deadLetters)
                    DeadLetters.Add(ParseDeadLetter(result));
                else
                    Records.Add(Parse(topicIndex, result));
            }
            consumer.Close();
            _done.TrySetResult();
        }
        catch (Exception e)
        {
            _done.TrySetException(e);
        }
    }

    static string? Header(Message<byte[], byte[]> message, string name) =>
        message.Headers?.TryGetLastBytes(name, out var bytes) == true ? Encoding.UTF8.GetString(bytes) : null;

    static DeadLetterRecord ParseDeadLetter(ConsumeResult<byte[], byte[]> result)
    {
        var message = result.Message;
        var idText = Header(message, HeaderNames.Id);
        var id = Guid.TryParse(idText, out var parsed) ? parsed : Guid.Empty;
        var valueBytes = message.Value?.Length ?? 0;
        if (valueBytes == 0)
            return new DeadLetterRecord(result.Offset.Value, id, idText, Header(message, HeaderNames.Error), 0, 0, null, null, null);
        try
        {
            var value = OutboxEvent.Parser.ParseFrom(message.Value);
            return new DeadLetterRecord(result.Offset.Value, id, idText, Header(message, HeaderNames.Error), valueBytes, value.Payload.Length,
                value.AggregateType, value.AggregateId, value.Id == idText ? null : $"value id {value.Id} != header id {idText}");
        }
        catch (Google.Protobuf.InvalidProtocolBufferException e)
        {
            return new DeadLetterRecord(result.Offset.Value, id, idText, Header(message, HeaderNames.Error), valueBytes, -1, null, null,
                $"value is not an OutboxEvent: {e.Message}");
        }
    }

    static Delivered Parse(int topicIndex, ConsumeResult<byte[], byte[]> result)
    {
        var message = result.Message;
        string? Header(string name) => TopicTail.Header(message, name);
        var idText = Header(HeaderNames.Id);
        var key = message.Key is null ? null : Encoding.UTF8.GetString(message.Key);
        var aggregate = key is not null && Aggregates.TryParse(key, out var a) ? a : -1;
        var seq = int.TryParse(Header("soak-seq"), NumberStyles.None, CultureInfo.InvariantCulture, out var s) ? s : -1;
        var updated = Header(HeaderNames.EventType)?.EndsWith(".updated", StringComparison.Ordinal) == true;
        string? malformed = null;
        ulong commitLsn = 0;
        if (!Guid.TryParse(idText, out var id))
            malformed = $"id header '{idText}'";
        else
        {
            // The value must be the Protobuf OutboxEvent of the same row.
            try
            {
                var value = OutboxEvent.Parser.ParseFrom(message.Value);
                commitLsn = value.Source?.CommitLsn ?? 0;
                using var payload = JsonDocument.Parse(value.Payload.Memory);
                if (value.Id != idText)
                    malformed = $"value id {value.Id} != header id {idText}";
                else if (value.AggregateId != key)
                    malformed = $"value aggregate_id {value.AggregateId} != key {key}";
                else if (payload.RootElement.GetProperty("seq").GetInt32() != seq)
                    malformed = "payload seq != header soak-seq";
                else if (value.Source is null || value.Source.CommitLsn == 0)
                    malformed = "no source.commit_lsn";
            }
            catch (Exception e) when (e is Google.Protobuf.InvalidProtocolBufferException or JsonException or KeyNotFoundException or InvalidOperationException)
            {
                malformed = $"value: {e.Message}";
            }
        }
        return new Delivered(topicIndex, result.Partition.Value, result.Offset.Value, id, aggregate, seq, updated, malformed, commitLsn);
    }

    public void Dispose()
    {
        _abort = true;
        _thread?.Join(TimeSpan.FromSeconds(10));
    }
}
