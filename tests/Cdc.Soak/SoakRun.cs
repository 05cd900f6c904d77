using System.Globalization;
using System.Text;
using System.Text.Json;
using Cdc.Embedded;
using Npgsql;

namespace Cdc.Soak;

/// <summary>
/// The soak from start to verdict: servers, worker, writers, faults for the given minutes; then everything is brought
/// up, the writers stop, the slot must catch up, the worker gets SIGTERM, the topics are read to their ends, and what
/// was committed is compared with what arrived.
/// </summary>
static class SoakRun
{
    const string Slot = "cdc_outbox";
    const string DeadLetterTopic = "outbox.dlq";
    const string CheckpointTopic = "cdc.checkpoints";
    public static string TopicOf(string aggregateType) => $"outbox.event.{aggregateType}";

    public static async Task<int> RunAsync(SoakOptions options)
    {
        if (options.Writers > Aggregates.BaseCount)
        {
            Console.Error.WriteLine($"soak: at most {Aggregates.BaseCount} writers (one aggregate each at least)");
            return 2;
        }
        if (options.Faults?.FirstOrDefault(k => !FaultInjector.AllKinds(options).Contains(k)) is { } unknown)
        {
            Console.Error.WriteLine($"soak: no fault '{unknown}' here; there are: {string.Join(", ", FaultInjector.AllKinds(options))}");
            return 2;
        }
        var root = WorkerBinary.RepositoryRoot();
        var runDir = Path.GetFullPath(options.LogDir ?? Path.Combine(root, "artifacts", "soak",
            $"{DateTime.Now.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture)}-seed{options.Seed}"));
        Directory.CreateDirectory(runDir);
        using var log = new RunLog(Path.Combine(runDir, "worker.log"));
        var command = string.Create(CultureInfo.InvariantCulture,
            $"dotnet run -c Release --project tests/Cdc.Soak -- --minutes {options.Minutes} --seed {options.Seed} --rate {options.Rate} --writers {options.Writers} --outbox {(options.Partitioned ? "partitioned" : "plain")} --payload {(options.Bytea ? "bytea" : "jsonb")}{(options.Faults is null ? "" : " --faults " + string.Join(',', options.Faults))}");
        log.Info($"Cdc chaos soak, seed {options.Seed}{(options.SeedGiven ? "" : " (random; pass --seed to repeat the fault schedule)")}");
        log.Info($"  repeat with: {command}");
        log.Info($"  run folder:  {runDir}");
        log.Info($"  worker log:  {log.Path}");

        using var early = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            if (early.IsCancellationRequested)
                return; // the second Ctrl+C aborts
            e.Cancel = true;
            early.Cancel();
            log.Info("Ctrl+C: ending the fault phase early, then checking as usual (Ctrl+C again aborts)");
        };

        EmbeddedPostgres? postgres = null;
        MockKafkaCluster? kafka = null;
        WorkerSupervisor? worker = null;
        KafkaWatermarks? watermarks = null;
        var tails = new List<TopicTail>(); // guarded by itself: topic_missing adds readers while the run goes on
        try
        {
            var workerAssembly = WorkerBinary.Path();
            // fsync off: a throwaway cluster, and no machine crash is simulated (a server crash is: pg_ctl stop -m immediate).
            // synchronous_commit on (EmbeddedPostgres turns it off with fsync): a commit the client saw acknowledged has
            // reached the OS before the answer, so it survives the server crash and the writers' bookkeeping stays exact.
            postgres = await EmbeddedPostgres.StartAsync(new EmbeddedPostgresOptions
            {
                Fsync = false,
                Settings = new Dictionary<string, string> { ["synchronous_commit"] = "on" },
            });
            log.Info($"PostgreSQL {postgres.ConnectionString} (fsync=off, synchronous_commit=on; data {postgres.DataDirectory})");
            await using (var connection = new NpgsqlConnection(postgres.ConnectionString))
            {
                await connection.OpenAsync();
                await using var ddl = new NpgsqlCommand(Schema.Ddl(options), connection);
                await ddl.ExecuteNonQueryAsync();
            }
            log.Info(options.Partitioned
                ? $"outbox: PARTITION BY RANGE (created_at), primary key (id, created_at), default partition {Schema.DefaultPartition}; payload {(options.Bytea ? "bytea" : "jsonb")}"
                : $"outbox: a plain table (the writer library's DDL); payload {(options.Bytea ? "bytea" : "jsonb")}");

            // The producer may not auto-create topics (below): every topic the worker writes to is created here first,
            // except those of the topic_missing faults, created through the mock API while the run goes on.
            kafka = MockKafkaCluster.Start(brokers: 3);
            foreach (var type in Aggregates.BaseTypes)
                kafka.CreateTopic(TopicOf(type), partitions: 3, replicationFactor: 3);
            kafka.CreateTopic(DeadLetterTopic, partitions: 1, replicationFactor: 3);
            kafka.CreateTopic(CheckpointTopic, partitions: 1, replicationFactor: 3);
            log.Info($"Kafka-protocol mock cluster (librdkafka, not Apache Kafka): {kafka.BootstrapServers}; topics " +
                     $"{string.Join(", ", Aggregates.BaseTypes.Select(TopicOf))} (3 partitions each), {DeadLetterTopic}, {CheckpointTopic}");

            for (var t = 0; t < Aggregates.BaseTypes.Length; t++)
                tails.Add(new TopicTail(kafka.BootstrapServers, TopicOf(Aggregates.BaseTypes[t]), t, 3, deadLetters: false, log));
            tails.Add(new TopicTail(kafka.BootstrapServers, DeadLetterTopic, -1, 1, deadLetters: true, log));
            tails.ForEach(t => t.Start());
            watermarks = new KafkaWatermarks(kafka.BootstrapServers);

            var environment = new Dictionary<string, string>
            {
                ["Cdc__Postgres__ConnectionString"] = postgres.ConnectionString,
                ["Cdc__Kafka__BootstrapServers"] = kafka.BootstrapServers,
                ["Cdc__Kafka__Producer__message.timeout.ms"] = options.MessageTimeoutMs.ToString(CultureInfo.InvariantCulture),
                ["Cdc__Kafka__Producer__allow.auto.create.topics"] = "false",
            };
            // The mock checks producer sequence numbers only for transactional producers: with several requests in
            // flight, an injected error on one batch lets the next one through, and librdkafka then takes the failed batch
            // for delivered (Apache Kafka would answer OUT_OF_ORDER_SEQUENCE_NUMBER). Seen here as "lost" records right
            // at kafka_produce_errors faults (the mock's, not the connector's), gone with one request in flight.
            var injectsProduceErrors = (options.Faults ?? FaultInjector.AllKinds(options)).Contains("kafka_produce_errors");
            if (injectsProduceErrors)
                environment["Cdc__Kafka__Producer__max.in.flight.requests.per.connection"] = "1";
            log.Info($"worker: dotnet {workerAssembly} with defaults (table public.outbox, slot {Slot}) and " +
                     $"Cdc__Kafka__Producer__message.timeout.ms={options.MessageTimeoutMs}, Cdc__Kafka__Producer__allow.auto.create.topics=false" +
                     (injectsProduceErrors ? ", Cdc__Kafka__Producer__max.in.flight.requests.per.connection=1 (kafka_produce_errors: the mock does not check sequence numbers of an idempotent producer)" : ""));
            worker = new WorkerSupervisor(workerAssembly, environment, log);
            await worker.StartAsync(waitStreaming: true, TimeSpan.FromSeconds(90)); // the slot exists from here on

            FaultInjector? injector = null;
            var monitor = new SlotMonitor(postgres.ConnectionString, Slot, log, () => injector?.Context ?? "", Path.Combine(runDir, "slot.csv"));
            var load = new LoadGenerator(postgres.ConnectionString, options, log);
            var bootstrap = kafka.BootstrapServers;
            injector = new FaultInjector(options, log, worker, kafka, postgres, monitor, load, watermarks, (type, typeIndex) =>
            {
                var tail = new TopicTail(bootstrap, TopicOf(type), typeIndex, 3, deadLetters: false, log);
                lock (tails)
                    tails.Add(tail);
                tail.Start();
            });
            using var stopMonitor = new CancellationTokenSource();
            var monitorTask = monitor.RunAsync(stopMonitor.Token);
            using var stopWatchdog = new CancellationTokenSource();
            var watchdog = WatchAsync(worker, stopWatchdog.Token);

            load.Start();
            log.Info($"{options.Writers} writers at {options.Rate} rows/s; faults every 10-40 s for {options.Minutes} min, drawn from: {string.Join(", ", injector.Kinds)}");
            using var stopFaults = new CancellationTokenSource();
            var injecting = injector.RunAsync(stopFaults.Token);
            var faultPhaseStart = log.Elapsed;
            try
            {
                await Task.Delay(TimeSpan.FromMinutes(options.Minutes), early.Token);
            }
            catch (OperationCanceledException)
            {
            }

            // The end: no more faults, everything up, writers stopped, then the slot must catch up.
            log.Info("fault phase over: finishing the current fault, then no more");
            await stopFaults.CancelAsync();
            await injecting;
            kafka.SetAllBrokersUp();
            for (var id = 1; id <= kafka.BrokerCount; id++)
                kafka.SetBrokerRtt(id, 0);
            var faultPhaseSeconds = log.Elapsed - faultPhaseStart;
            log.Info("stopping the writers (each finishes its transaction)");
            await load.StopAsync();
            var lastWrite = await monitor.CurrentInsertLsnAsync();
            log.Info($"last write done; waiting until the slot is confirmed to {SlotMonitor.Lsn(lastWrite)} (at most {options.DrainTimeout.TotalMinutes:0} min)");
            var drainStart = log.Elapsed;
            var drained = false;
            ulong confirmed = 0;
            while (log.Elapsed - drainStart < options.DrainTimeout.TotalSeconds)
            {
                try
                {
                    confirmed = await monitor.ConfirmedFlushLsnAsync();
                }
                catch (NpgsqlException)
                {
                }
                if (confirmed >= lastWrite)
                {
                    drained = true;
                    break;
                }
                await Task.Delay(200);
            }
            var drainSeconds = log.Elapsed - drainStart;
            log.Info(drained
                ? string.Create(CultureInfo.InvariantCulture, $"slot confirmed to {SlotMonitor.Lsn(confirmed)} after {drainSeconds:F1} s")
                : $"PROBLEM: the slot is still at {SlotMonitor.Lsn(confirmed)}, before {SlotMonitor.Lsn(lastWrite)}, after {options.DrainTimeout.TotalMinutes:0} min: the worker is stuck");

            await stopWatchdog.CancelAsync();
            await watchdog;
            var (finalTook, finalExit) = await worker.TerminateAsync(TimeSpan.FromSeconds(30), restartAfter: null);
            await stopMonitor.CancelAsync();
            await monitorTask;

            // Read every topic to its end (the worker is gone: the high watermarks are final).
            var backlog = tails.Sum(t => t.Read);
            log.Info($"reading the topics to their high watermarks ({backlog} records read while running)");
            var readTimeout = TimeSpan.FromSeconds(180 + load.RowsInserted / 1000.0);
            await Task.WhenAll(tails.Select(t => t.FinishAsync(readTimeout)));
            log.Info($"read {tails.Sum(t => t.Read)} records in total");

            var (markers, tableRows, partitionRows) = await ReadDatabaseAsync(postgres.ConnectionString, injector.DetachedTables);
            var verdict = Verdict.Compute(load.Events.ToList(), load.Transactions.ToList(), markers, tableRows,
                tails.Where(t => t.Topic != DeadLetterTopic).SelectMany(t => t.Records).ToList(),
                tails.Single(t => t.Topic == DeadLetterTopic).DeadLetters, load.OversizedRows, injector.MissingTopics);
            foreach (var w in injector.MissingTopics)
            {
                // Said once while it was missing (checked then), and not again later (a restart while blocked would).
                var total = worker.MissingTopicWarnings.GetValueOrDefault(w.Topic);
                if (total != w.WarningsWhileBlocked)
                    injector.Problems.Add($"the worker warned {total} times in all that {w.Topic} does not exist, {w.WarningsWhileBlocked} of them while it was missing");
            }

            var failures = new List<string>();
            void FailIf(bool condition, string what)
            {
                if (condition)
                    failures.Add(what);
            }
            FailIf(verdict.Lost > 0, $"{verdict.Lost} committed events lost");
            FailIf(verdict.Unexpected > 0, $"{verdict.Unexpected} events delivered that were never committed");
            FailIf(verdict.OrderViolations > 0, $"{verdict.OrderViolations} per-aggregate order violations");
            FailIf(verdict.UpdatesPublished > 0, $"{verdict.UpdatesPublished} records published for UPDATEs");
            FailIf(verdict.Malformed + verdict.Misrouted > 0, $"{verdict.Malformed} malformed and {verdict.Misrouted} misrouted records");
            FailIf(verdict.UnexpectedDeadLetters > 0, $"{verdict.UnexpectedDeadLetters} unexpected dead letters (only the oversized rows may be dead-lettered)");
            FailIf(verdict.DeadLettersWithPayload > 0, $"{verdict.DeadLettersWithPayload} oversized rows' dead letters kept their payload");
            FailIf(verdict.DeadLettersMalformed > 0, $"{verdict.DeadLettersMalformed} oversized rows' dead letters are not their OutboxEvent with an error header");
            FailIf(verdict.HealthyResendsInBlockedWindows > 0,
                $"{verdict.HealthyResendsInBlockedWindows} records re-sent on healthy topics while a topic was missing (a re-send flood)");
            FailIf(verdict.UncheckedBlockedWindows > 0, $"inconclusive: {verdict.UncheckedBlockedWindows} missing-topic windows could not be checked for re-sends");
            FailIf(injector.Problems.Count > 0, $"fault checks: {string.Join("; ", injector.Problems)}");
            FailIf(!drained, "the worker did not catch up within the drain timeout (stuck)");
            FailIf(worker.Problems.Count > 0, $"worker problems: {string.Join("; ", worker.Problems)}");
            var gaps = tails.Sum(t => t.GapOffsets);
            FailIf(gaps > 0, $"inconclusive: the reader missed {gaps} offsets (the mock broker dropped them first)");
            FailIf(verdict.AckedCommitsMissing + verdict.RolledBackButPresent > 0 || verdict.TableRows != verdict.ExpectedTableRows,
                $"inconclusive: the soak's bookkeeping disagrees with the database (acked commits missing {verdict.AckedCommitsMissing}, " +
                $"rolled back but present {verdict.RolledBackButPresent}, outbox rows {verdict.TableRows} vs {verdict.ExpectedTableRows} expected)");

            var summary = Summary(options, command, runDir, log, faultPhaseSeconds, verdict, injector, worker, monitor,
                drained, drainSeconds, finalTook, finalExit, load, tails, failures, partitionRows);
            var json = JsonSerializer.Serialize(summary, new JsonSerializerOptions
            {
                WriteIndented = true,
                PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
                Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
            });
            await File.WriteAllTextAsync(Path.Combine(runDir, "summary.json"), json);
            if (options.Out is not null)
                await File.WriteAllTextAsync(options.Out, json);

            var table = Table(options, verdict, injector, worker, monitor, drained, drainSeconds, finalTook, finalExit, gaps, faultPhaseSeconds, partitionRows);
            Console.WriteLine();
            Console.WriteLine(table);
            log.File(table);
            Console.WriteLine(failures.Count == 0
                ? "RESULT: PASS — nothing lost, nothing unexpected, per-aggregate order held"
                : "RESULT: FAIL — " + string.Join("; ", failures));
            Console.WriteLine($"summary: {Path.Combine(runDir, "summary.json")}{(options.Out is null ? "" : $" and {Path.GetFullPath(options.Out)}")}; worker log: {log.Path}");
            return failures.Count == 0 ? 0 : 1;
        }
        catch (Exception e)
        {
            log.Info($"SOAK ERROR (a problem of the soak itself or its servers): {e}");
            return 1;
        }
        finally
        {
            worker?.Dispose();
            lock (tails)
                tails.ForEach(t => t.Dispose());
            kafka?.Dispose();
            if (postgres is not null)
            {
                try
                {
                    File.Copy(postgres.LogFile, Path.Combine(runDir, "postgres.log"), overwrite: true);
                }
                catch (IOException)
                {
                }
                await postgres.DisposeAsync();
            }
        }
    }

    static async Task WatchAsync(WorkerSupervisor worker, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(1000, ct);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            await worker.CheckAliveAsync();
        }
    }

    /// <summary>
    /// The committed transactions' markers, the outbox's rows (those of detached partitions included: they were the
    /// outbox's, relayed before they were detached), and the rows per partition (a partitioned outbox; empty otherwise).
    /// </summary>
    static async Task<(HashSet<long> Markers, long OutboxRows, Dictionary<string, long> PartitionRows)> ReadDatabaseAsync(
        string connectionString, IReadOnlyList<string> detached)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        var markers = new HashSet<long>();
        await using (var command = new NpgsqlCommand("SELECT txn_id FROM soak_txn", connection))
        await using (var reader = await command.ExecuteReaderAsync())
            while (await reader.ReadAsync())
                markers.Add(reader.GetInt64(0));
        var partitions = new Dictionary<string, long>(StringComparer.Ordinal);
        await using (var command = new NpgsqlCommand(
            "SELECT c.relname, (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I', c.relname), false, true, '')))[1]::text::bigint " +
            "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'public.outbox'::regclass ORDER BY c.relname", connection))
        await using (var reader = await command.ExecuteReaderAsync())
            while (await reader.ReadAsync())
                partitions[reader.GetString(0)] = reader.GetInt64(1);
        long rows;
        await using (var count = new NpgsqlCommand("SELECT count(*) FROM outbox", connection))
            rows = (long)(await count.ExecuteScalarAsync())!;
        foreach (var table in detached)
        {
            await using var count = new NpgsqlCommand($"SELECT count(*) FROM public.{table}", connection);
            var n = (long)(await count.ExecuteScalarAsync())!;
            partitions[table + " (detached)"] = n;
            rows += n;
        }
        return (markers, rows, partitions);
    }

    static object Summary(SoakOptions options, string command, string runDir, RunLog log, double faultPhaseSeconds, Verdict v,
        FaultInjector injector, WorkerSupervisor worker, SlotMonitor monitor, bool drained, double drainSeconds,
        TimeSpan finalTook, int? finalExit, LoadGenerator load, List<TopicTail> tails, List<string> failures,
        Dictionary<string, long> partitionRows) => new
    {
        Passed = failures.Count == 0,
        Failures = failures,
        Seed = options.Seed,
        options.Minutes,
        options.Rate,
        options.Writers,
        Outbox = options.Partitioned ? "partitioned" : "plain",
        Payload = options.Bytea ? "bytea" : "jsonb",
        MessageTimeoutMs = options.MessageTimeoutMs,
        Command = command,
        RunFolder = runDir,
        WorkerLog = log.Path,
        FaultPhaseSeconds = Math.Round(faultPhaseSeconds, 1),
        TotalSeconds = Math.Round(log.Elapsed, 1),
        Events = new
        {
            v.GeneratedRows,
            WrittenCommitted = v.Written,
            v.DeliveredDistinct,
            v.RecordsRead,
            v.Lost,
            v.Unexpected,
            UnexpectedByReason = v.UnexpectedByReason,
            v.Duplicates,
            v.OrderViolations,
            v.UpdatesPublished,
            v.Malformed,
            v.Misrouted,
            v.DeadLettered,
            v.DeadLettersExpected,
            v.DeadLettersDelivered,
            v.DeadLettersMissing,
            v.DeadLetterDuplicates,
            v.UnexpectedDeadLetters,
            v.DeadLettersWithPayload,
            v.DeadLettersMalformed,
            v.HealthyRecordsInBlockedWindows,
            v.HealthyResendsInBlockedWindows,
            v.UncheckedBlockedWindows,
            v.AggregatesOnSeveralPartitions,
            RolledBackToSavepoint = v.SavepointRows,
            DeletedInSameTransaction = v.DeletedRows,
            ReaderGapOffsets = tails.Sum(t => t.GapOffsets),
        },
        Transactions = new
        {
            Total = v.Transactions,
            Committed = v.CommittedTransactions,
            RolledBackOnPurpose = v.IntendedRollbacks,
            v.CommitUnknown,
            v.CommitUnknownCommitted,
            FailedAttempts = load.FailedAttempts,
            v.AckedCommitsMissing,
            OutboxTableRows = v.TableRows,
            v.ExpectedTableRows,
        },
        Faults = new
        {
            Total = injector.Faults.Count,
            ByKind = injector.Kinds.ToDictionary(k => k, k => injector.Faults.Count(f => f.Kind == k)),
            List = injector.Faults,
            injector.MissingTopics,
            injector.OversizedRows,
            injector.Partitions,
            injector.Problems,
        },
        OutboxPartitionRows = partitionRows,
        Worker = new
        {
            worker.Starts,
            Restarts = worker.Starts - 1,
            worker.UnexpectedExits,
            worker.StreamInterruptions,
            worker.Recoveries,
            worker.KafkaUnreachable,
            worker.ErrorLines,
            worker.Problems,
            FinalSigtermExitCode = finalExit,
            FinalSigtermSeconds = Math.Round(finalTook.TotalSeconds, 1),
        },
        Slot = new
        {
            monitor.WorstLagBytes,
            monitor.WorstLagBytesWhen,
            monitor.WorstLagSeconds,
            monitor.WorstLagSecondsWhen,
            monitor.Polls,
            monitor.FailedPolls,
            ConfirmedMovedBackAfterPostgresRestart = monitor.RegressionsAfterPostgresRestart,
            ConfirmedMovedBackOtherwise = monitor.RegressionsOtherwise,
            Drained = drained,
            DrainSeconds = Math.Round(drainSeconds, 1),
        },
        Details = new
        {
            Lost = v.LostDetails,
            Unexpected = v.UnexpectedDetails,
            OrderViolations = v.OrderDetails,
            Other = v.OtherDetails,
            DeadLetters = v.DeadLetterDetails,
            BlockedWindows = v.BlockedWindowDetails,
            ReaderGaps = tails.SelectMany(t => t.GapNotes).ToList(),
        },
    };

    static string Table(SoakOptions options, Verdict v, FaultInjector injector, WorkerSupervisor worker, SlotMonitor monitor,
        bool drained, double drainSeconds, TimeSpan finalTook, int? finalExit, long gaps, double faultPhaseSeconds,
        Dictionary<string, long> partitionRows)
    {
        var rows = new List<(string, string)>
        {
            ("seed", options.Seed.ToString(CultureInfo.InvariantCulture)),
            ("fault phase", $"{faultPhaseSeconds / 60:F1} min at {options.Rate} rows/s, {options.Writers} writers"),
            ("outbox", (options.Partitioned ? "partitioned by range (created_at), default partition" : "plain table") + $", payload {(options.Bytea ? "bytea" : "jsonb")}"),
            ("transactions", $"{v.Transactions} ({v.CommittedTransactions} committed, {v.IntendedRollbacks} rolled back on purpose, " +
                             $"{v.CommitUnknown} with COMMIT answer lost of which {v.CommitUnknownCommitted} committed)"),
            ("rows inserted", $"{v.GeneratedRows} ({v.SavepointRows} rolled back to a savepoint, {v.DeletedRows} deleted in their transaction)"),
            ("events written (committed)", v.Written.ToString(CultureInfo.InvariantCulture)),
            ("delivered (distinct ids)", v.DeliveredDistinct.ToString(CultureInfo.InvariantCulture)),
            ("records read", v.RecordsRead.ToString(CultureInfo.InvariantCulture)),
            ("LOST (must be 0)", v.Lost.ToString(CultureInfo.InvariantCulture)),
            ("UNEXPECTED (must be 0)", v.Unexpected + (v.UnexpectedByReason.Count == 0 ? "" : " (" + string.Join(", ", v.UnexpectedByReason.Select(kv => $"{kv.Value} {kv.Key}")) + ")")),
            ("ORDER VIOLATIONS (must be 0)", v.OrderViolations.ToString(CultureInfo.InvariantCulture)),
            ("duplicates (extra deliveries)", v.Duplicates.ToString(CultureInfo.InvariantCulture)),
            ("updates published / malformed / misrouted", $"{v.UpdatesPublished} / {v.Malformed} / {v.Misrouted}"),
            ("dead letters", $"{v.DeadLettered} records: {v.DeadLettersDelivered} of {v.DeadLettersExpected} expected (oversized rows), " +
                             $"{v.DeadLettersMissing} missing, {v.UnexpectedDeadLetters} unexpected, {v.DeadLettersWithPayload} with payload, " +
                             $"{v.DeadLettersMalformed} malformed, {v.DeadLetterDuplicates} duplicates"),
            ("healthy topics while one missing", $"{v.HealthyRecordsInBlockedWindows} records produced, {v.HealthyResendsInBlockedWindows} re-sends (must be 0)"),
            ("reader gaps (offsets)", gaps.ToString(CultureInfo.InvariantCulture)),
            ("faults", $"{injector.Faults.Count}: " + string.Join(", ", injector.Kinds.Select(k => $"{k} {injector.Faults.Count(f => f.Kind == k)}"))),
            ("worker restarts", $"{worker.Starts - 1} ({worker.UnexpectedExits} unexpected exits); stream interruptions logged {worker.StreamInterruptions}, recoveries {worker.Recoveries}"),
            ("worker problems", worker.Problems.Count == 0 ? "none" : string.Join("; ", worker.Problems)),
            ("worst slot lag (bytes)", $"{monitor.WorstLagBytes} ({monitor.WorstLagBytesWhen})"),
            ("worst slot lag (time)", $"{monitor.WorstLagSeconds:F0} s ({monitor.WorstLagSecondsWhen})"),
            ("confirmed position moved back", $"{monitor.RegressionsAfterPostgresRestart} after PostgreSQL restarts, {monitor.RegressionsOtherwise} otherwise"),
            ("final drain", drained ? $"caught up in {drainSeconds:F1} s" : $"NOT caught up after {drainSeconds:F0} s"),
            ("final SIGTERM", $"exit code {finalExit?.ToString(CultureInfo.InvariantCulture) ?? "none"} after {finalTook.TotalSeconds:F1} s"),
        };
        var width = rows.Max(r => r.Item1.Length);
        var text = new StringBuilder();
        text.AppendLine(new string('-', width + 60));
        foreach (var (name, value) in rows)
            text.AppendLine(CultureInfo.InvariantCulture, $"{name.PadRight(width)}  {value}");
        text.AppendLine(new string('-', width + 60));
        foreach (var f in injector.Faults)
            text.AppendLine(CultureInfo.InvariantCulture, $"fault #{f.Index,-3} +{f.At,6:F1}s {f.Kind,-22} {f.Seconds,5:F1}s  {f.Detail}");
        void Section(string title, List<string> lines)
        {
            if (lines.Count == 0)
                return;
            text.AppendLine(title);
            foreach (var line in lines)
                text.AppendLine("  " + line);
        }
        Section("lost:", v.LostDetails);
        Section("unexpected:", v.UnexpectedDetails);
        Section("order violations:", v.OrderDetails);
        Section("other findings:", v.OtherDetails);
        Section("oversized rows' dead letters:", v.DeadLetterDetails);
        Section("topics missing for a while:", v.BlockedWindowDetails);
        Section("partitions:", injector.Partitions.Select(p => $"fault #{p.Fault} +{p.At:F0}s {p.Action} {p.Partition} [{p.Range}){(p.Rows is { } n ? $" holding {n} rows" : "")}").ToList());
        Section("outbox rows per partition at the end:", partitionRows.Select(kv => $"{kv.Key}: {kv.Value}").ToList());
        Section("fault check problems:", injector.Problems);
        return text.ToString().TrimEnd();
    }
}
