//! Offline checks of what ships beside the code: the Kubernetes manifests parse and carry
//! the fields that make them work; scripts/tune.sh without --apply changes nothing.

use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn docs(file: &str) -> Vec<Yaml> {
    let text = std::fs::read_to_string(repo().join("deploy/kubernetes").join(file)).unwrap();
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn kind<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    docs.iter().find(|d| d["kind"].as_str() == Some(kind)).unwrap_or_else(|| panic!("no {kind}"))
}

fn container(d: &Yaml) -> &Yaml {
    &d["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn ringecho_deployment_and_service() {
    let docs = docs("ringecho.yaml");
    for d in &docs {
        assert!(d["apiVersion"].as_str().is_some() && d["metadata"]["name"].as_str().is_some(), "{d:?}");
    }
    let dep = kind(&docs, "Deployment");
    assert_eq!(dep["apiVersion"].as_str(), Some("apps/v1"));
    let labels = &dep["spec"]["selector"]["matchLabels"];
    assert_eq!(labels, &dep["spec"]["template"]["metadata"]["labels"], "selector matches the pod labels");
    let c = container(dep);
    assert!(c["image"].as_str().is_some());
    let args: Vec<&str> = c["args"].as_vec().unwrap().iter().filter_map(|a| a.as_str()).collect();
    assert!(args.contains(&"--backend=epoll"), "runs where io_uring is blocked");
    assert!(args.iter().any(|a| a.starts_with("--metrics=")));
    assert!(args.iter().any(|a| a.starts_with("--udp-rate-limit=")), "a UDP echo on a network needs a limit");
    let ports: Vec<&str> = c["ports"].as_vec().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    let svc = kind(&docs, "Service");
    assert_eq!(&svc["spec"]["selector"], labels);
    for p in svc["spec"]["ports"].as_vec().unwrap() {
        assert!(
            ports.contains(&p["targetPort"].as_str().unwrap()),
            "service port {p:?} names a container port"
        );
    }
}

#[test]
fn ringload_indexed_job() {
    let docs = docs("ringload-job.yaml");
    let job = kind(&docs, "Job");
    assert_eq!(job["apiVersion"].as_str(), Some("batch/v1"));
    assert_eq!(job["spec"]["completionMode"].as_str(), Some("Indexed"));
    assert_eq!(job["spec"]["completions"], job["spec"]["parallelism"], "all pods run at once");
    let c = container(job);
    let script = c["args"][0].as_str().unwrap();
    for needle in ["--start-at", "--json /results/", "$JOB_COMPLETION_INDEX", "--label"] {
        assert!(script.contains(needle), "job command lacks {needle}");
    }
    let mount = c["volumeMounts"][0]["name"].as_str().unwrap();
    let volumes = job["spec"]["template"]["spec"]["volumes"].as_vec().unwrap();
    assert!(volumes.iter().any(|v| v["name"].as_str() == Some(mount)));
    assert_eq!(
        c["securityContext"]["seccompProfile"]["type"].as_str(),
        Some("Localhost"),
        "ringload needs a profile that allows io_uring"
    );
    let profile: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/kubernetes/seccomp-io-uring.json")).unwrap(),
    )
    .unwrap();
    let allowed = profile["syscalls"][0]["names"].to_string();
    for s in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
        assert!(allowed.contains(s));
    }
}

#[test]
fn tune_dry_run_changes_nothing() {
    let sysctls = [
        "net/core/somaxconn",
        "net/ipv4/tcp_max_syn_backlog",
        "net/ipv4/ip_local_port_range",
        "net/core/rmem_max",
        "net/core/wmem_max",
        "net/ipv4/tcp_rmem",
        "net/ipv4/tcp_wmem",
        "net/core/netdev_max_backlog",
        "kernel/io_uring_disabled",
        "fs/file-max",
    ];
    let read = || sysctls.map(|s| std::fs::read_to_string(format!("/proc/sys/{s}")).ok());
    let before = read();
    let out = std::process::Command::new("bash").arg(repo().join("scripts/tune.sh")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(read(), before, "tune.sh without --apply changed a setting");
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "net.core.somaxconn",
        "ip_local_port_range",
        "kernel.io_uring_disabled",
        "nofile",
        "memlock",
        "governor",
        "IRQ",
    ] {
        assert!(text.contains(name), "tune.sh does not show {name}");
    }
    assert!(text.contains("dry run: nothing changed"));
    let bad = std::process::Command::new("bash")
        .arg(repo().join("scripts/tune.sh"))
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
