using System.Diagnostics;
using Cdc.Configuration;
using Cdc.Mapping;
using Cdc.Publishing;
using Confluent.Kafka;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Cdc.Benchmarks;

/// <summary>
/// <c>--poll CONNECTION BOOTSTRAP WARMUP_ROWS</c>: the plain polling relay of the outbox articles, as a baseline, in a
/// process of its own. Loop: in a transaction, <c>SELECT ... ORDER BY created_at, id LIMIT 1000 FOR UPDATE SKIP LOCKED</c>,
/// produce each row (the connector's own mapping and idempotent producer settings), wait for every acknowledgement,
/// <c>DELETE</c> those rows, commit. Prints <c>START</c> once the warm-up rows are gone and <c>END events seconds</c>
/// when the table is empty, then waits for stdin to close (so the parent can read its /proc).
/// </summary>
static class PollingRelay
{
    const int BatchSize = 1000;

    public static async Task<int> RunAsync(string[] args)
    {
        var (connectionString, bootstrap, warmupRows) = (args[0], args[1], long.Parse(args[2]));
        var mapper = new OutboxEventMapper(new TopicRouter("outbox.event.{aggregate_type}"), "outbox.dlq");
        using var producer = new ProducerBuilder<byte[], byte[]>(KafkaRecordProducer.ProducerConfig(new KafkaOptions { BootstrapServers = bootstrap })).Build();
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var select = new NpgsqlCommand(
            """
            SELECT id, aggregate_type, aggregate_id, event_type, payload::text, headers::text, created_at
            FROM public.outbox_poll ORDER BY created_at, id LIMIT 1000 FOR UPDATE SKIP LOCKED
            """, connection);
        await using var delete = new NpgsqlCommand("DELETE FROM public.outbox_poll WHERE id = ANY($1)", connection);
        var ids = new NpgsqlParameter<Guid[]>();
        delete.Parameters.Add(ids);

        long relayed = 0, measured = 0;
        Stopwatch? clock = warmupRows == 0 ? Stopwatch.StartNew() : null;
        if (clock is not null)
            Console.WriteLine("START");
        var batch = new List<(Guid Id, OutboxRow Row)>(BatchSize);
        while (true)
        {
            await using var tx = await connection.BeginTransactionAsync();
            select.Transaction = tx;
            delete.Transaction = tx;
            batch.Clear();
            await using (var reader = await select.ExecuteReaderAsync())
            {
                while (await reader.ReadAsync())
                {
                    var id = reader.GetGuid(0);
                    batch.Add((id, new OutboxRow
                    {
                        Id = id.ToString("D"),
                        AggregateType = reader.GetString(1),
                        AggregateId = reader.GetString(2),
                        EventType = reader.GetString(3),
                        Payload = System.Text.Encoding.UTF8.GetBytes(reader.GetString(4)),
                        PayloadKind = PayloadKind.Json,
                        Headers = reader.IsDBNull(5) ? null : System.Text.Encoding.UTF8.GetBytes(reader.GetString(5)),
                        CreatedAt = reader.GetDateTime(6),
                    }));
                }
            }
            if (batch.Count == 0)
                break;

            var pending = batch.Count;
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Error? failure = null;
            foreach (var (_, row) in batch)
            {
                var mapped = mapper.Map(row, new TransactionInfo(0, 0, row.CreatedAt!.Value));
                var record = mapped.Record ?? mapped.DeadLetter!;
                while (true)
                {
                    try
                    {
                        producer.Produce(record.Topic, new Message<byte[], byte[]> { Key = record.Key, Value = record.Value, Headers = record.Headers }, report =>
                        {
                            if (report.Error.Code != ErrorCode.NoError)
                                failure = report.Error;
                            if (Interlocked.Decrement(ref pending) == 0)
                                done.SetResult();
                        });
                        break;
                    }
                    catch (ProduceException<byte[], byte[]> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
                    {
                        Thread.Sleep(1);
                    }
                }
            }
            await done.Task;
            if (failure is not null)
                throw new InvalidOperationException($"delivery failed: {failure}");

            ids.TypedValue = batch.Select(b => b.Id).ToArray();
            await delete.ExecuteNonQueryAsync();
            await tx.CommitAsync();
            relayed += batch.Count;
            if (clock is null)
            {
                if (relayed >= warmupRows)
                {
                    clock = Stopwatch.StartNew();
                    Console.WriteLine("START");
                }
            }
            else
            {
                measured += batch.Count;
            }
        }
        Console.WriteLine($"END {measured} {clock?.Elapsed.TotalSeconds ?? 0:R}");
        while (Console.ReadLine() is not null) { }
        return 0;
    }
}
