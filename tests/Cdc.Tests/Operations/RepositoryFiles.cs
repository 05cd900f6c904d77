using YamlDotNet.RepresentationModel;

namespace Cdc.Tests.Operations;

/// <summary>Files of the repository the operations tests read: found from the test's output folder, up to Cdc.sln.</summary>
static class RepositoryFiles
{
    public static string Root { get; } = Cdc.Embedded.WorkerBinary.RepositoryRoot();

    public static string Chart => Path.Combine(Root, "charts", "cdc");
    public static string Dashboard => Path.Combine(Chart, "dashboards", "cdc.json");

    public static string Read(params string[] relative) => File.ReadAllText(Path.Combine([Root, .. relative]));

    /// <summary>The root mapping of a YAML file (one document).</summary>
    public static YamlMappingNode LoadYaml(string path)
    {
        var stream = new YamlStream();
        using (var reader = new StringReader(File.ReadAllText(path)))
            stream.Load(reader);
        Assert.Single(stream.Documents);
        return Assert.IsType<YamlMappingNode>(stream.Documents[0].RootNode);
    }

    /// <summary>The node at a dotted path (<c>a.b.c</c>) of a mapping, or null when a key is missing.</summary>
    public static YamlNode? At(this YamlMappingNode root, string dottedPath)
    {
        YamlNode node = root;
        foreach (var key in dottedPath.Split('.'))
        {
            if (node is not YamlMappingNode mapping || !mapping.Children.TryGetValue(new YamlScalarNode(key), out var child))
                return null;
            node = child;
        }
        return node;
    }

    /// <summary>The scalar text at a dotted path, or null.</summary>
    public static string? ScalarAt(this YamlMappingNode root, string dottedPath) => (root.At(dottedPath) as YamlScalarNode)?.Value;
}
