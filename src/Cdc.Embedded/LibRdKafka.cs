using System.Runtime.InteropServices;
using System.Text;
using Confluent.Kafka;

namespace Cdc.Embedded;

/// <summary>
/// The few librdkafka C functions the mock cluster needs, bound to the very native file that
/// Confluent.Kafka loaded. Function pointers (not [DllImport]) so that no process-wide
/// DllImportResolver is installed behind the application's back.
/// </summary>
internal static unsafe class LibRdKafka
{
    private static readonly Lock Gate = new();
    private static nint _lib;

    // rd_kafka_conf_t*, rd_kafka_t* and rd_kafka_mock_cluster_t* are opaque pointers (nint);
    // rd_kafka_resp_err_t is a C enum (int); strings are NUL-terminated UTF-8.
    private static delegate* unmanaged[Cdecl]<nint> _confNew;
    private static delegate* unmanaged[Cdecl]<nint, byte*, byte*, byte*, nuint, int> _confSet;
    private static delegate* unmanaged[Cdecl]<nint, void> _confDestroy;
    private static delegate* unmanaged[Cdecl]<int, nint, byte*, nuint, nint> _new;
    private static delegate* unmanaged[Cdecl]<nint, void> _destroy;
    private static delegate* unmanaged[Cdecl]<int, nint> _err2str;
    private static delegate* unmanaged[Cdecl]<nint, int, nint> _mockClusterNew;
    private static delegate* unmanaged[Cdecl]<nint, void> _mockClusterDestroy;
    private static delegate* unmanaged[Cdecl]<nint, nint> _mockClusterBootstraps;
    private static delegate* unmanaged[Cdecl]<nint, byte*, int, int, int> _mockTopicCreate;
    private static delegate* unmanaged[Cdecl]<nint, int, int> _mockBrokerSetDown;
    private static delegate* unmanaged[Cdecl]<nint, int, int> _mockBrokerSetUp;
    private static delegate* unmanaged[Cdecl]<nint, int, int, int> _mockBrokerSetRtt;
    private static delegate* unmanaged[Cdecl]<nint, short, nuint, int*, void> _mockPushRequestErrorsArray;

    private const int RdKafkaProducer = 0; // RD_KAFKA_PRODUCER
    private const int ConfOk = 0;          // RD_KAFKA_CONF_OK

    /// <summary>Loads librdkafka and binds the functions; idempotent and thread-safe.</summary>
    public static void EnsureLoaded()
    {
        lock (Gate)
        {
            if (_lib != 0) return;
            var lib = LoadNativeLibrary();
            _confNew = (delegate* unmanaged[Cdecl]<nint>)Export(lib, "rd_kafka_conf_new");
            _confSet = (delegate* unmanaged[Cdecl]<nint, byte*, byte*, byte*, nuint, int>)Export(lib, "rd_kafka_conf_set");
            _confDestroy = (delegate* unmanaged[Cdecl]<nint, void>)Export(lib, "rd_kafka_conf_destroy");
            _new = (delegate* unmanaged[Cdecl]<int, nint, byte*, nuint, nint>)Export(lib, "rd_kafka_new");
            _destroy = (delegate* unmanaged[Cdecl]<nint, void>)Export(lib, "rd_kafka_destroy");
            _err2str = (delegate* unmanaged[Cdecl]<int, nint>)Export(lib, "rd_kafka_err2str");
            _mockClusterNew = (delegate* unmanaged[Cdecl]<nint, int, nint>)Export(lib, "rd_kafka_mock_cluster_new");
            _mockClusterDestroy = (delegate* unmanaged[Cdecl]<nint, void>)Export(lib, "rd_kafka_mock_cluster_destroy");
            _mockClusterBootstraps = (delegate* unmanaged[Cdecl]<nint, nint>)Export(lib, "rd_kafka_mock_cluster_bootstraps");
            _mockTopicCreate = (delegate* unmanaged[Cdecl]<nint, byte*, int, int, int>)Export(lib, "rd_kafka_mock_topic_create");
            _mockBrokerSetDown = (delegate* unmanaged[Cdecl]<nint, int, int>)Export(lib, "rd_kafka_mock_broker_set_down");
            _mockBrokerSetUp = (delegate* unmanaged[Cdecl]<nint, int, int>)Export(lib, "rd_kafka_mock_broker_set_up");
            _mockBrokerSetRtt = (delegate* unmanaged[Cdecl]<nint, int, int, int>)Export(lib, "rd_kafka_mock_broker_set_rtt");
            _mockPushRequestErrorsArray = (delegate* unmanaged[Cdecl]<nint, short, nuint, int*, void>)Export(lib, "rd_kafka_mock_push_request_errors_array");
            _lib = lib; // last: a half-bound library is never seen as loaded
        }
    }

    /// <summary>The path of the native file that was bound, for diagnostics.</summary>
    public static string? LoadedPath { get; private set; }

    /// <summary>rd_kafka_new(RD_KAFKA_PRODUCER) with the given properties; throws with librdkafka's error text.</summary>
    public static nint NewProducerHandle(IEnumerable<KeyValuePair<string, string>> config)
    {
        var conf = _confNew();
        var errstr = stackalloc byte[512];
        foreach (var (name, value) in config)
        {
            fixed (byte* n = Utf8z(name), v = Utf8z(value))
            {
                if (_confSet(conf, n, v, errstr, 512) != ConfOk)
                {
                    _confDestroy(conf);
                    throw new InvalidOperationException($"rd_kafka_conf_set({name}): {Marshal.PtrToStringUTF8((nint)errstr)}");
                }
            }
        }
        var rk = _new(RdKafkaProducer, conf, errstr, 512); // takes ownership of conf on success only
        if (rk == 0)
        {
            _confDestroy(conf);
            throw new InvalidOperationException($"rd_kafka_new: {Marshal.PtrToStringUTF8((nint)errstr)}");
        }
        return rk;
    }

    public static void Destroy(nint rk) => _destroy(rk);
    public static string Err2Str(ErrorCode err) => Marshal.PtrToStringUTF8(_err2str((int)err)) ?? err.ToString();
    public static nint MockClusterNew(nint rk, int brokers) => _mockClusterNew(rk, brokers);
    public static void MockClusterDestroy(nint mcluster) => _mockClusterDestroy(mcluster);
    public static string MockClusterBootstraps(nint mcluster) => Marshal.PtrToStringUTF8(_mockClusterBootstraps(mcluster)) ?? "";

    public static ErrorCode MockTopicCreate(nint mcluster, string topic, int partitions, int replicationFactor)
    {
        fixed (byte* t = Utf8z(topic)) return (ErrorCode)_mockTopicCreate(mcluster, t, partitions, replicationFactor);
    }

    public static ErrorCode MockBrokerSetDown(nint mcluster, int brokerId) => (ErrorCode)_mockBrokerSetDown(mcluster, brokerId);
    public static ErrorCode MockBrokerSetUp(nint mcluster, int brokerId) => (ErrorCode)_mockBrokerSetUp(mcluster, brokerId);
    public static ErrorCode MockBrokerSetRtt(nint mcluster, int brokerId, int rttMs) => (ErrorCode)_mockBrokerSetRtt(mcluster, brokerId, rttMs);

    public static void MockPushRequestErrors(nint mcluster, short apiKey, ErrorCode[] errors)
    {
        var codes = Array.ConvertAll(errors, e => (int)e); // rd_kafka_resp_err_t is a C int enum
        fixed (int* p = codes) _mockPushRequestErrorsArray(mcluster, apiKey, (nuint)codes.Length, p);
    }

    private static byte[] Utf8z(string s) => Encoding.UTF8.GetBytes(s + "\0");

    private static nint Export(nint lib, string name) =>
        NativeLibrary.TryGetExport(lib, name, out var f)
            ? f
            : throw new EntryPointNotFoundException($"{name} is not exported by {LoadedPath}; this librdkafka build has no mock cluster API.");

    /// <summary>
    /// Loads the same librdkafka file as Confluent.Kafka. Binding our own copy from elsewhere would
    /// work over TCP too, but one copy keeps versions and global state in step. On Debian
    /// `librdkafka.so` needs libsasl2.so.3 (usually absent), and Confluent.Kafka falls back to
    /// `centos8-librdkafka.so`; trying the candidates in the same order lands on the same file.
    /// </summary>
    private static nint LoadNativeLibrary()
    {
        Exception? confluentError = null;
        try { Library.Load(); } // no-op when a client already loaded it
        catch (Exception e) { confluentError = e; }

        var tried = new List<string>();
        foreach (var path in Candidates())
        {
            try
            {
                var handle = NativeLibrary.Load(path);
                LoadedPath = path;
                return handle;
            }
            catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
            {
                tried.Add($"  {path}: {e.Message}");
            }
        }

        throw new DllNotFoundException(
            "Could not load librdkafka for the Kafka mock cluster. Tried:" + Environment.NewLine +
            (tried.Count == 0 ? "  (no candidate file found)" : string.Join(Environment.NewLine, tried)) +
            (confluentError is null ? "" : Environment.NewLine + "Confluent.Kafka.Library.Load() failed too: " + confluentError.Message));
    }

    private static IEnumerable<string> Candidates()
    {
        var seen = new HashSet<string>();

        // 1. The file Confluent.Kafka actually mapped into this process (Linux: /proc/self/maps).
        foreach (var mapped in MappedLibRdKafka())
            if (seen.Add(mapped)) yield return mapped;

        // 2. The package's runtimes/<rid>/native folder under the app's folder (where a build puts it, next to
        //    Confluent.Kafka.dll), then the app's folder itself (where a RID-specific publish, NativeAOT's too, puts it).
        var rid = (OperatingSystem.IsLinux() ? "linux" : OperatingSystem.IsMacOS() ? "osx" : "win") + "-" +
                  RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant();
        foreach (var dir in new[] { Path.Combine(AppContext.BaseDirectory, "runtimes", rid, "native"), AppContext.BaseDirectory })
        {
            if (!Directory.Exists(dir)) continue;
            var preferred = new[] { "librdkafka.so", "centos8-librdkafka.so", "librdkafka.dylib", "librdkafka.dll" }
                .Select(f => Path.Combine(dir, f)).Where(File.Exists);
            var others = Directory.EnumerateFiles(dir, "*librdkafka*").Order(StringComparer.Ordinal);
            foreach (var path in preferred.Concat(others))
                if (seen.Add(path)) yield return path;
        }
    }

    private static IEnumerable<string> MappedLibRdKafka()
    {
        const string maps = "/proc/self/maps";
        if (!File.Exists(maps)) return [];
        try
        {
            // Lines look like "7f..-7f.. r-xp 00000000 08:01 1234  /path/to/centos8-librdkafka.so".
            return File.ReadLines(maps)
                .Select(line => line.IndexOf('/') is var i and >= 0 ? line[i..] : null)
                .OfType<string>()
                .Where(p => Path.GetFileName(p).Contains("librdkafka", StringComparison.Ordinal) && File.Exists(p))
                .Distinct()
                .ToList();
        }
        catch (IOException) { return []; }
    }
}
