-- Argo CD health of an ABTest (continuous.afs.dev), as Argo Rollouts reports a rollout:
-- shifting traffic is Progressing, waiting for a person's approval is Suspended, a
-- promotion is Healthy, and a test that ended without promoting (rolled back, halted,
-- inconclusive) or cannot go on (Ready=False: invalid spec, target or backend not found,
-- database unreachable) is Degraded. Waiting for a deployed version to become Available
-- is Progressing.
local hs = pending("phase")
if hs ~= nil then return hs end
hs = {}
local ready = condition("Ready")
local phase = obj.status.phase
local reason = obj.status.reason or ""
if ready ~= nil and ready.status == "False" then
  if ready.reason == "NotAvailable" then
    hs.status = "Progressing"
  else
    hs.status = "Degraded"
  end
  hs.message = describe(ready, "")
elseif phase == "Promoted" then
  hs.status = "Healthy"
  hs.message = "Promoted: " .. reason
elseif phase == "WaitingPromotion" then
  hs.status = "Suspended"
  hs.message = "Waiting for approval (afs-continuous abtest promote|abort): " .. reason
elseif phase == "RolledBack" or phase == "Halted" or phase == "Inconclusive" then
  hs.status = "Degraded"
  hs.message = phase .. ": " .. reason
else
  hs.status = "Progressing"
  local weights = obj.status.weights
  if weights ~= nil and weights.challenger ~= nil then
    hs.message = phase .. ", challenger at " .. weights.challenger .. "%"
  else
    hs.message = phase
  end
end
return hs
