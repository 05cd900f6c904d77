using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Confluent.Kafka;

namespace Cdc.Worker;

/// <summary>
/// Where Confluent.Kafka's native imports resolve in the NativeAOT build. The JIT build needs none of this: there the
/// runtime resolves them from the app's deps.json (runtimes/&lt;rid&gt;/native), and Confluent.Kafka falls back from
/// <c>librdkafka.so</c> to <c>centos8-librdkafka.so</c> by itself.
/// </summary>
static class NativeLibraries
{
    // The NativeAOT publish puts the librdkafka.redist files next to the binary.
    static readonly Lazy<nint> LibRdKafka = new(() => LoadFirst(
        Path.Combine(AppContext.BaseDirectory, "librdkafka.so"),
        // Built against CentOS 8's glibc with its dependencies inside: what loads where librdkafka.so lacks libsasl2.so.3.
        Path.Combine(AppContext.BaseDirectory, "centos8-librdkafka.so")));

    /// <summary>Installs the resolver on Confluent.Kafka's assembly when running as a NativeAOT binary; a no-op under the JIT.</summary>
    public static void ResolveForNativeBuild()
    {
        // Dynamic code is unsupported only in the NativeAOT build.
        if (RuntimeFeature.IsDynamicCodeSupported)
            return;
        NativeLibrary.SetDllImportResolver(typeof(Library).Assembly, Resolve);
    }

    static nint Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath) => name switch
    {
        // Confluent.Kafka P/Invokes dlopen from "libdl"; glibc 2.34+ (Debian 12) ships only libdl.so.2, no libdl.so.
        "libdl" => NativeLibrary.TryLoad("libdl.so.2", out var libdl) ? libdl : 0,
        // Its native-method classes import "librdkafka" and "centos8-librdkafka": both go to the file that loads here,
        // which the NativeAOT runtime would not find by itself (no deps.json, and librdkafka.so fails to load).
        "librdkafka" or "centos8-librdkafka" => LibRdKafka.Value,
        _ => 0, // the runtime's own probing
    };

    static nint LoadFirst(params string[] paths)
    {
        foreach (var path in paths)
            if (File.Exists(path) && NativeLibrary.TryLoad(path, out var handle))
                return handle;
        return 0; // Confluent.Kafka then reports "Failed to load the librdkafka native library".
    }
}
