//! One test bed for services mode against a BGP router, shared by the tests that need it
//! (`services_bird`, `observe`, the services bench): N nodes in network namespaces with BIRD
//! as their ToR, a temp dir for the agents' kubeconfigs, and the agents started on it. The API
//! server runs inside the tor namespace: call [`BirdBed::cluster`] and start agents from within
//! `in_netns(&bed.topo.tor, …)`.

use crate::bird::Bird;
use crate::cluster;
use crate::netns::Topology;
use crate::router::{Router, RouterConfig};
use crate::vipd::Vipd;
use fake_apiserver::ApiServer;
use std::net::IpAddr;
use std::path::PathBuf;

/// Field order is drop order: the agents stop first, then BIRD, then the namespaces go.
pub struct BirdBed {
    /// The agents started with [`BirdBed::start_agent`], in start order.
    pub agents: Vec<Vipd>,
    pub bird: Bird,
    pub topo: Topology,
    dir: tempfile::TempDir,
}

impl BirdBed {
    /// `nodes` nodes, BIRD started and peering with each.
    pub fn new(nodes: usize) -> BirdBed {
        BirdBed::with(nodes, |c| c)
    }

    /// As [`BirdBed::new`], with BIRD's configuration changed by `cfg`.
    pub fn with(nodes: usize, cfg: impl FnOnce(RouterConfig) -> RouterConfig) -> BirdBed {
        let topo = Topology::with_nodes(nodes);
        let mut bird = Bird::new(&topo, cfg(RouterConfig::nodes(nodes)));
        bird.start();
        BirdBed {
            agents: Vec::new(),
            bird,
            topo,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Node `i`'s network namespace.
    pub fn node(&self, i: usize) -> String {
        self.topo.nodes[i].clone()
    }

    /// Node `i`'s kubeconfig for the API server on `port`.
    pub fn kubeconfig(&self, i: usize, port: u16) -> PathBuf {
        cluster::node_kubeconfig(self.dir.path(), i, port)
    }

    /// Node `i`'s kubeconfig for the API server on `port`, as the holder of `token`.
    pub fn kubeconfig_as(&self, i: usize, port: u16, token: &str) -> PathBuf {
        cluster::node_kubeconfig_as(self.dir.path(), i, port, Some(token))
    }

    /// Starts the agent of node `i` (services mode, `extra` settings) against the API server on
    /// `port`, kept in [`BirdBed::agents`].
    pub fn start_agent(&mut self, i: usize, port: u16, extra: &[(&str, &str)]) {
        let agent = self.agent(i, port, extra);
        self.agents.push(agent);
    }

    /// The agent of node `i`, started, for a test that holds (and drops) it itself.
    pub fn agent(&self, i: usize, port: u16, extra: &[(&str, &str)]) -> Vipd {
        let mut agent = Vipd::services(&self.topo, i, &self.kubeconfig(i, port), extra);
        agent.start();
        agent
    }

    /// Inside the tor namespace: the API server with Node `node0` and `services` (name, VIP,
    /// and whether a ready endpoint on node0 serves it).
    pub async fn cluster(&self, services: &[(&str, &str, bool)]) -> (ApiServer, kube::Client) {
        let api = cluster::api_server().await;
        let client = api.client();
        cluster::create_node(&client, "node0").await;
        for (name, vip, served) in services {
            let svc = cluster::lb_service(name, vip, false);
            if *served {
                cluster::create_served(&client, &svc, "node0", "10.244.0.5").await;
            } else {
                cluster::create_service(&client, &svc).await;
            }
        }
        (api, client)
    }

    /// BIRD's log tail and each kept agent's, for failure messages.
    pub fn explain(&self) -> String {
        let held: Vec<&Vipd> = self.agents.iter().collect();
        self.explain_with(&held)
    }

    /// BIRD's log tail and those of `agents`.
    pub fn explain_with(&self, agents: &[&Vipd]) -> String {
        let mut s = format!("---- bird ----\n{}", self.bird.log_tail());
        for (i, a) in agents.iter().enumerate() {
            s.push_str(&format!("\n---- vipd agent {i} ----\n{}", a.log_tail()));
        }
        s
    }

    /// The next hops BIRD has for `prefix`.
    pub fn hops(&self, prefix: &str) -> Vec<IpAddr> {
        self.bird.next_hops(prefix)
    }
}
