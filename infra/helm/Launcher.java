// Runs the real Helm (helm-java: Helm's Go code as a native library) for the tests, since no helm
// binary is packaged here. Single-file source launch:
//   java -cp '.cache/helm/libs/*' infra/helm/Launcher.java lint CHART [--strict]
//   java -cp '.cache/helm/libs/*' infra/helm/Launcher.java template CHART [--name N] [--namespace NS]
//        [--values FILE]... [--set KEY=VALUE]... [--kube-version V]
//   java -cp '.cache/helm/libs/*' infra/helm/Launcher.java install-dry-run CHART [same options as template]
// `template` prints the rendered manifests on stdout; `lint` prints Helm's messages;
// `install-dry-run` is a client-only `helm install --dry-run` (no cluster) and prints what
// `helm install` prints, NOTES included. Any failure
// (bad values rejected by values.schema.json, template errors, lint errors) exits 1 with Helm's
// message on stderr, so the caller sees exactly what `helm` would have said.
import com.marcnuri.helm.DryRun;
import com.marcnuri.helm.Helm;
import com.marcnuri.helm.InstallCommand;
import com.marcnuri.helm.LintCommand;
import com.marcnuri.helm.LintResult;
import com.marcnuri.helm.TemplateCommand;
import java.nio.file.Path;

public class Launcher {
  public static void main(String[] args) {
    if (args.length < 2) usage();
    try {
      Helm helm = new Helm(Path.of(args[1]));
      switch (args[0]) {
        case "lint" -> lint(helm, args);
        case "template" -> template(helm, args);
        case "install-dry-run" -> installDryRun(helm, args);
        default -> usage();
      }
    } catch (RuntimeException e) {
      System.err.println(e.getMessage());
      System.exit(1);
    }
  }

  static void lint(Helm helm, String[] args) {
    LintCommand lint = helm.lint();
    for (int i = 2; i < args.length; i++) {
      if (args[i].equals("--strict")) lint = lint.strict();
      else usage();
    }
    LintResult result = lint.call();
    for (String message : result.getMessages()) System.out.println(message);
    if (result.isFailed()) System.exit(1);
  }

  static void template(Helm helm, String[] args) {
    TemplateCommand template = helm.template();
    for (int i = 2; i < args.length; i++) {
      String flag = args[i];
      if (i + 1 >= args.length) usage();
      String value = args[++i];
      switch (flag) {
        case "--name" -> template = template.withName(value);
        case "--namespace" -> template = template.withNamespace(value);
        case "--values" -> template = template.withValuesFile(Path.of(value));
        case "--kube-version" -> template = template.withKubeVersion(value);
        case "--set" -> {
          int eq = value.indexOf('=');
          if (eq < 1) usage();
          template = template.set(value.substring(0, eq), value.substring(eq + 1));
        }
        default -> usage();
      }
    }
    System.out.print(template.call());
  }

  static void installDryRun(Helm helm, String[] args) {
    InstallCommand install = helm.install().clientOnly().dryRun().withDryRunOption(DryRun.CLIENT);
    for (int i = 2; i < args.length; i++) {
      String flag = args[i];
      if (i + 1 >= args.length) usage();
      String value = args[++i];
      switch (flag) {
        case "--name" -> install = install.withName(value);
        case "--namespace" -> install = install.withNamespace(value);
        case "--values" -> install = install.withValuesFile(Path.of(value));
        case "--kube-version" -> install = install.withKubeVersion(value);
        case "--set" -> {
          int eq = value.indexOf('=');
          if (eq < 1) usage();
          install = install.set(value.substring(0, eq), value.substring(eq + 1));
        }
        default -> usage();
      }
    }
    System.out.print(install.call().getOutput());
  }

  static void usage() {
    System.err.println("usage: Launcher lint CHART [--strict] | Launcher template CHART [--name N] [--namespace NS] "
        + "[--values FILE]... [--set KEY=VALUE]... [--kube-version V] | Launcher install-dry-run CHART [template options]");
    System.exit(2);
  }
}
