//! `scl bulk submit FILE --method M (--config F | --url URL)`: submits a bulk
//! job to central's inbound API and follows it with a progress bar until it
//! ends. The API key comes from the variable `SCL_API_KEY` (never an
//! argument, so it stays out of shell history and process lists).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// Runs the command; the exit code (0 when the job completed).
pub fn submit(file: &Path, method: &str, config: Option<&Path>, url: Option<&str>) -> i32 {
    match run(file, method, config, url) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            2
        }
    }
}

fn base_url(config: Option<&Path>, url: Option<&str>) -> Result<String, String> {
    if let Some(url) = url {
        return Ok(url.trim_end_matches('/').to_owned());
    }
    let config = config.ok_or("give --config (central's `listen`) or --url")?;
    let deployment = crate::deployment::Deployment::load(config).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let central = deployment
        .file
        .central
        .as_ref()
        .ok_or("the deployment has no [central] section")?;
    Ok(format!("http://{}", central.listen))
}

fn run(file: &Path, method: &str, config: Option<&Path>, url: Option<&str>) -> Result<i32, String> {
    let key = std::env::var("SCL_API_KEY")
        .map_err(|_| "set SCL_API_KEY to the API key to submit with".to_owned())?;
    let base = base_url(config, url)?;
    let body = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| e.to_string())?;
        let response = http
            .post(format!("{base}/api/bulk/{method}"))
            .header("X-API-Key", &key)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("cannot reach {base}: {e}"))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status.as_u16() != 202 {
            return Err(format!(
                "central refused the job ({status}): {}",
                answer["error"].as_str().unwrap_or("no reason given")
            ));
        }
        let id = answer["id"].as_str().unwrap_or_default().to_owned();
        let total = answer["total"].as_u64().unwrap_or(0);
        eprintln!("job {id}: {total} records");
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} records  {per_sec}  eta {eta}  {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        loop {
            let job: Value = http
                .get(format!("{base}/api/bulk/{id}"))
                .header("X-API-Key", &key)
                .send()
                .await
                .map_err(|e| format!("cannot reach {base}: {e}"))?
                .json()
                .await
                .map_err(|e| format!("central sent an unreadable answer: {e}"))?;
            bar.set_position(job["processed"].as_u64().unwrap_or(0));
            bar.set_message(format!("{} failed", job["failed"].as_u64().unwrap_or(0)));
            let state = job["status"].as_str().unwrap_or("").to_owned();
            if !matches!(state.as_str(), "QUEUED" | "PROCESSING") {
                bar.finish();
                println!(
                    "{id} {state}: {} succeeded, {} failed of {}",
                    job["succeeded"], job["failed"], job["total"]
                );
                return Ok(if state == "COMPLETED" { 0 } else { 1 });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}
