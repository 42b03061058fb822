-- Argo CD health of a LearningLoop (continuous.afs.dev): its phase and Ready condition.
-- Watching, Training and Testing are a loop doing its work: Healthy. Suspended is
-- Suspended; a Failed phase or Ready=False (invalid spec, database or API unreachable)
-- is Degraded; a loop the operator has not caught up with is Progressing.
local hs = pending("phase")
if hs ~= nil then return hs end
hs = {}
local ready = condition("Ready")
local phase = obj.status.phase
if phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true"
elseif phase == "Failed" or (ready ~= nil and ready.status == "False") then
  hs.status = "Degraded"
  hs.message = describe(ready, "Failed")
elseif phase == "Pending" then
  hs.status = "Progressing"
  hs.message = describe(ready, "Pending")
else
  hs.status = "Healthy"
  hs.message = phase .. (ready ~= nil and (" (" .. describe(ready, "") .. ")") or "")
end
return hs
