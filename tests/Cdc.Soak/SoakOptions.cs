using System.Globalization;

namespace Cdc.Soak;

/// <summary>Command line of the soak: <c>--minutes N --seed N --rate events/s --out file.json --writers N --log-dir DIR --outbox plain|partitioned --payload jsonb|bytea</c>.</summary>
sealed record SoakOptions
{
    public double Minutes { get; init; } = 10;
    public int Seed { get; init; } = Environment.TickCount & 0x7fffffff;
    public bool SeedGiven { get; init; }
    /// <summary>Outbox rows per second over all writers (rolled-back rows included). The mock broker reads back ~4k/s per consumer.</summary>
    public int Rate { get; init; } = 300;
    public int Writers { get; init; } = 4;
    public string? Out { get; init; }
    public string? LogDir { get; init; }
    public int MessageTimeoutMs { get; init; } = 5000;
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromMinutes(3);
    /// <summary>The outbox is range-partitioned by created_at (default partition; partitions attached and detached while streaming).</summary>
    public bool Partitioned { get; init; }
    /// <summary>The outbox's payload column is bytea (else jsonb).</summary>
    public bool Bytea { get; init; }
    /// <summary>Only these fault kinds (null: all the run's kinds).</summary>
    public string[]? Faults { get; init; }

    public const string Usage = """
        Chaos soak: the real Cdc worker (a child process) on a throwaway PostgreSQL and librdkafka's Kafka-protocol
        mock cluster (3 brokers, in this process), under mixed load, with a random fault every 10-40 s.

          dotnet run -c Release --project tests/Cdc.Soak -- [options]

          --minutes N     how long faults are injected (default 10; fractions allowed)
          --seed N        seed of the fault schedule and the load's shape (default: random, printed)
          --rate N        outbox rows per second over all writers (default 300)
          --writers N     concurrent writer tasks (default 4)
          --out FILE      also write the summary as JSON to FILE
          --log-dir DIR   where the worker log, slot samples and summary go (default artifacts/soak/<time>-seed<N>)
          --outbox KIND   plain (default) or partitioned: PARTITION BY RANGE (created_at), primary key (id, created_at),
                          a default partition, and the fault partition_cycle (attach a partition, detach a relayed one)
          --payload TYPE  the payload column's type: jsonb (default) or bytea
          --faults LIST   only these fault kinds, comma-separated (default: all of the run's kinds)

        Faults (one at a time, from a shuffled bag; the last three twice per bag): worker SIGKILL and SIGTERM, all brokers
        or one broker down, retriable produce errors (the worker then runs with one request in flight: the mock does not check
        an idempotent producer's sequence numbers), broker RTT, PostgreSQL restart (fast) and crash; topic_missing (rows
        of a new aggregate type whose topic does not exist, the producer not allowed to auto-create topics, the topic created
        through the mock some seconds later), oversized_row (an unroutable row with a payload over 1 MB: a dead letter
        without its payload), and with --outbox partitioned partition_cycle.

        Exit code 0 only when nothing committed was lost (an oversized row's dead letter included), nothing else arrived
        (rolled-back rows, UPDATEs, other dead letters, a dead letter with its payload, malformed or misrouted records),
        per-aggregate order held, healthy topics got no re-sends while a topic was missing, the worker said once that the
        topic was missing and moved past every oversized row, the worker never exited on its own, every SIGTERM exit was 0
        within 30 s, the slot caught up at the end, and the reader saw every offset; 1 otherwise; 2 on bad usage.
        """;

    public static SoakOptions Parse(string[] args)
    {
        var options = new SoakOptions();
        for (var i = 0; i < args.Length; i++)
        {
            var name = args[i];
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{name} needs a value");
            options = name switch
            {
                "--minutes" => options with { Minutes = Positive(name, double.Parse(Value(), CultureInfo.InvariantCulture)) },
                "--seed" => options with { Seed = int.Parse(Value(), CultureInfo.InvariantCulture), SeedGiven = true },
                "--rate" => options with { Rate = (int)Positive(name, int.Parse(Value(), CultureInfo.InvariantCulture)) },
                "--writers" => options with { Writers = (int)Positive(name, int.Parse(Value(), CultureInfo.InvariantCulture)) },
                "--out" => options with { Out = Value() },
                "--log-dir" => options with { LogDir = Value() },
                "--outbox" => Value() switch
                {
                    "plain" => options with { Partitioned = false },
                    "partitioned" => options with { Partitioned = true },
                    var other => throw new ArgumentException($"--outbox is plain or partitioned, not {other}"),
                },
                "--faults" => options with { Faults = Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) },
                "--payload" => Value() switch
                {
                    "jsonb" => options with { Bytea = false },
                    "bytea" => options with { Bytea = true },
                    var other => throw new ArgumentException($"--payload is jsonb or bytea, not {other}"),
                },
                _ => throw new ArgumentException($"unknown option {name}"),
            };
        }
        return options;

        static double Positive(string name, double value) =>
            value > 0 ? value : throw new ArgumentException($"{name} must be positive");
    }
}
