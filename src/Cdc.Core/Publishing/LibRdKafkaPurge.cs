using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Confluent.Kafka;

namespace Cdc.Publishing;

/// <summary>
/// <c>rd_kafka_purge</c>, which Confluent.Kafka does not expose (it purges only inside AbortTransaction). Without it, an
/// idempotent producer whose record failed keeps sending the records queued behind it (after an epoch bump, librdkafka
/// renumbers and sends them), so a later event could reach Kafka before the failed one is sent again. The native
/// handle is read with an <see cref="UnsafeAccessorAttribute"/> (no reflection, safe under trimming) and the function is
/// bound in the very librdkafka file Confluent.Kafka mapped into this process.
/// </summary>
static unsafe class LibRdKafkaPurge
{
    // rdkafka.h: RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT | RD_KAFKA_PURGE_F_NON_BLOCKING.
    const int QueueInFlightNonBlocking = 0x1 | 0x2 | 0x4;

    static readonly Lazy<nint> Function = new(Bind);

    /// <summary>Purges the producer's queues and in-flight requests without waiting; false when it cannot be done here.</summary>
    public static bool TryPurge(Handle producer)
    {
        var purge = Function.Value;
        if (purge == 0 || producer.IsInvalid)
            return false;
        var handle = (SafeHandle)LibrdkafkaHandle(producer);
        var added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            return ((delegate* unmanaged[Cdecl]<nint, int, int>)purge)(handle.DangerousGetHandle(), QueueInFlightNonBlocking) == 0;
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
        finally
        {
            if (added)
                handle.DangerousRelease();
        }
    }

    [UnsafeAccessor(UnsafeAccessorKind.Method, Name = "get_LibrdkafkaHandle")]
    [return: UnsafeAccessorType("Confluent.Kafka.Impl.SafeKafkaHandle, Confluent.Kafka")]
    static extern object LibrdkafkaHandle(Handle handle);

    static nint Bind()
    {
        foreach (var path in MappedFiles())
            if (NativeLibrary.TryLoad(path, out var library) && NativeLibrary.TryGetExport(library, "rd_kafka_purge", out var purge))
                return purge;
        return 0;
    }

    /// <summary>The librdkafka files mapped into this process (Linux), i.e. the one Confluent.Kafka loaded.</summary>
    static IEnumerable<string> MappedFiles()
    {
        const string maps = "/proc/self/maps";
        if (!File.Exists(maps))
            return [];
        try
        {
            // Lines look like "7f..-7f.. r-xp 00000000 08:01 1234  /path/to/centos8-librdkafka.so".
            return File.ReadLines(maps)
                .Select(line => line.IndexOf('/') is var i and >= 0 ? line[i..] : null)
                .OfType<string>()
                .Where(p => Path.GetFileName(p).Contains("librdkafka", StringComparison.Ordinal))
                .Distinct()
                .ToList();
        }
        catch (IOException)
        {
            return [];
        }
    }
}
